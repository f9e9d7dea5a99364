//! Named-value templates: `{{name}}` is replaced by the value called `name`. Filling fails
//! on a name with no value, so no placeholder can reach a reader.

use std::collections::BTreeMap;

/// A template named a value that was not provided.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("report template: no value for placeholder '{{{{{0}}}}}'")]
pub struct MissingValue(pub String);

/// Values by name, already formatted for prose.
pub type Values = BTreeMap<String, String>;

/// Replaces every `{{name}}` in `text` with `values[name]`.
pub fn fill(text: &str, values: &Values) -> Result<String, MissingValue> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| MissingValue(after.chars().take(30).collect()))?;
        let name = after[..close].trim();
        out.push_str(values.get(name).ok_or_else(|| MissingValue(name.into()))?);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_rejects_unknown_names() {
        let mut v = Values::new();
        v.insert("x".into(), "1.5".into());
        assert_eq!(fill("a {{x}} b {{ x }}", &v).unwrap(), "a 1.5 b 1.5");
        assert_eq!(fill("{{y}}", &v), Err(MissingValue("y".into())));
        assert!(fill("{{x", &v).is_err());
    }
}
