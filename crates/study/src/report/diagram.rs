//! The system diagram: arrivals, a router and GPUs with their schedulers, drawn by hand as
//! SVG (a fixed picture, not data).

/// The diagram as a standalone SVG document.
pub fn system() -> String {
    let mut s = String::from(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="760" height="300" viewBox="0 0 760 300" font-family="sans-serif" font-size="13">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>
<rect x="0" y="0" width="760" height="300" fill="white"/>
<text x="20" y="40" font-weight="bold">Requests</text>
<text x="20" y="58">Poisson arrivals, rate λ</text>
<text x="20" y="76">prompt L, decode budget B</text>
<line x1="120" y1="150" x2="205" y2="150" stroke="#444" stroke-width="2" marker-end="url(#arrow)"/>
<rect x="210" y="115" width="110" height="70" rx="8" fill="#eef4fb" stroke="#1f77b4" stroke-width="2"/>
<text x="265" y="146" text-anchor="middle" font-weight="bold">Router</text>
<text x="265" y="164" text-anchor="middle">central, jsq, …</text>
"##,
    );
    for (i, y) in [30, 120, 210].iter().enumerate() {
        let label = if i == 2 {
            "GPU N".to_string()
        } else {
            format!("GPU {}", i + 1)
        };
        s.push_str(&format!(
            r##"<line x1="320" y1="150" x2="425" y2="{cy}" stroke="#444" stroke-width="2" marker-end="url(#arrow)"/>
<rect x="430" y="{y}" width="300" height="60" rx="8" fill="#f4fbf4" stroke="#2ca02c" stroke-width="2"/>
<text x="445" y="{t1}" font-weight="bold">{label}: scheduler A or B</text>
<rect x="445" y="{by}" width="60" height="16" fill="#d62728" opacity="0.75"/>
<text x="510" y="{bt}">prefill S(b)</text>
<rect x="600" y="{by}" width="20" height="16" fill="#1f77b4" opacity="0.75"/>
<rect x="624" y="{by}" width="20" height="16" fill="#1f77b4" opacity="0.75"/>
<text x="650" y="{bt}">decodes</text>
"##,
            cy = y + 30,
            t1 = y + 22,
            by = y + 32,
            bt = y + 45,
        ));
    }
    s.push_str(
        r##"<text x="580" y="201" text-anchor="middle" fill="#555">⋮</text>
<text x="20" y="250" fill="#555">one batch per iteration; a batch of b tokens takes</text>
<text x="20" y="268" fill="#555">S(b) = C + A·max(0, b − b0) seconds</text>
</svg>
"##,
    );
    s
}
