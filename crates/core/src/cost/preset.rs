//! Cost presets: fitted models saved as TOML (`llmsim calibrate --out`), read back by
//! `llmsim run --cost FILE`, plus the built-in ones shipped with the crate.
//!
//! A preset file looks like
//!
//! ```toml
//! name = "h200-llama3.1-8b"
//! source = "where the numbers come from"
//!
//! [profiled]
//! setup_s = 0.0057
//! # ... every field of ProfiledCost, in seconds or tokens as named
//! ```

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

use super::{CostModel, ProfiledCost};

/// A named, sourced cost model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Short name, e.g. `h200-llama3.1-8b`.
    pub name: String,
    /// Where the parameters come from (measurement, file, command).
    pub source: String,
    /// The fitted model.
    pub profiled: ProfiledCost,
}

/// Built-in presets: `(name, TOML text)`. Each file states its source.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "h200-llama3.1-8b",
        include_str!("presets/h200-llama3.1-8b.toml"),
    ),
    (
        "h100-llama3.1-8b",
        include_str!("presets/h100-llama3.1-8b.toml"),
    ),
];

/// Names of the built-in presets.
pub fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

/// Why a preset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    /// The file could not be read.
    #[error("cannot read cost preset {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a valid preset.
    #[error("{origin} is not a valid cost preset: {why}")]
    Invalid {
        /// The file, or the built-in preset's name.
        origin: String,
        /// The TOML parser's or the model check's message, with line and field.
        why: String,
    },
}

impl Preset {
    /// Parses and checks the TOML text of a preset read from `origin`.
    pub fn parse(text: &str, origin: &str) -> Result<Preset, PresetError> {
        let invalid = |why: String| PresetError::Invalid {
            origin: origin.to_string(),
            why,
        };
        let preset: Preset = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        preset
            .profiled
            .check()
            .map_err(|w| invalid(format!("[profiled] {w}")))?;
        Ok(preset)
    }

    /// The built-in preset called `name`, if there is one.
    pub fn built_in(name: &str) -> Option<Preset> {
        BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Preset::parse(text, n).expect("built-in presets are valid (tested)"))
    }

    /// The preset as TOML text, preceded by a comment saying what the file is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("presets serialise");
        format!(
            "# llmsim cost preset: use with `llmsim run --cost FILE`. Units: *_s in seconds\n\
             # (prefill_attention_s per squared prompt token, per_*_s per token), tokens and\n\
             # sequences as named. See src/cost/profiled.rs for the model's form.\n{body}"
        )
    }

    /// The preset's cost model.
    pub fn model(&self) -> Arc<dyn CostModel> {
        Arc::new(self.profiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_presets_parse_and_round_trip() {
        for name in built_in_names() {
            let p = Preset::built_in(name).unwrap();
            assert_eq!(p.name, name);
            assert_eq!(Preset::parse(&p.to_toml(), "round trip").unwrap(), p);
        }
    }

    #[test]
    fn unknown_and_invalid_fields_are_named() {
        let p = Preset::built_in("h200-llama3.1-8b").unwrap();
        let text = p.to_toml().replace("free_tokens", "free_tokenz");
        let e = Preset::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("free_tokenz"), "{e}");
        let text = p.to_toml().replace("setup_s = ", "setup_s = -");
        let e = Preset::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("setup_s"), "{e}");
    }
}
