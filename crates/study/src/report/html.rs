//! The HTML edition of the report: the Markdown text rendered by pulldown-cmark, wrapped in
//! one self-contained page with inline CSS and the figures inlined as SVG.

use pulldown_cmark::{Options, Parser, html};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:920px;\
margin:2em auto;padding:0 1em;line-height:1.55;color:#222}h1,h2,h3{line-height:1.25}\
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;\
padding:.3em .6em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
figure{margin:1.5em 0;text-align:center}figure svg{max-width:100%;height:auto}\
figcaption{font-size:.9em;color:#555;margin-top:.3em}code,pre{background:#f6f6f6;border-radius:3px}\
pre{padding:.8em;overflow-x:auto}";

/// Renders `markdown` to a complete HTML page titled `title`, replacing each image
/// `figures/NAME.svg` with the SVG text `figures[NAME]` and its alt text as caption.
pub fn page(title: &str, markdown: &str, figures: &[(String, String)]) -> String {
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(markdown, Options::ENABLE_TABLES));
    for (name, svg) in figures {
        let tag = format!("<img src=\"figures/{name}.svg\" alt=\"");
        while let Some(start) = body.find(&tag) {
            let alt_start = start + tag.len();
            let alt_end = alt_start + body[alt_start..].find('"').unwrap_or(0);
            let end = alt_end + body[alt_end..].find("/>").map_or(0, |i| i + 2);
            let caption = body[alt_start..alt_end].to_string();
            let svg = svg.trim_start_matches(|c| c != '<');
            body.replace_range(
                start..end,
                &format!(
                    "<figure id=\"fig-{name}\">{svg}<figcaption>{caption}</figcaption></figure>"
                ),
            );
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlines_figures_and_tables() {
        let md = "# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![The caption](figures/f1.svg)\n";
        let html = page("T", md, &[("f1".into(), "<svg id=\"x\"></svg>".into())]);
        assert!(html.contains("<table>"));
        assert!(html.contains("<figure id=\"fig-f1\"><svg id=\"x\"></svg><figcaption>The caption</figcaption></figure>"));
        assert!(!html.contains("<img"));
    }
}
