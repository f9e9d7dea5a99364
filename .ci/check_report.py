"""Open the generated report in real headless Chromium: fail on console errors, page
errors, or a figure that renders empty; save a full-page screenshot."""

import pathlib
import sys

from playwright.sync_api import sync_playwright

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# A figure counts as drawn when its SVG has a visible box and data marks in it.
FIGURE_CHECK = """
() => Array.from(document.querySelectorAll('figure')).map(f => {
  const svg = f.querySelector('svg');
  if (!svg) return {id: f.id, ok: false, why: 'no svg'};
  const box = svg.getBoundingClientRect();
  const marks = svg.querySelectorAll('polyline, polygon, circle, path, rect, line').length;
  return {id: f.id, ok: box.width > 50 && box.height > 50 && marks >= 3,
          why: `box ${box.width}x${box.height}, ${marks} marks`};
})
"""


def main(report: str, screenshot: str) -> int:
    url = pathlib.Path(report).resolve().as_uri()
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto(url, wait_until="load")
        figures = page.evaluate(FIGURE_CHECK)
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    empty = [f for f in figures if not f["ok"]]
    print(f"{len(figures)} figures, {len(empty)} empty, {len(errors)} console errors; screenshot {screenshot}")
    for f in empty:
        print(f"  empty figure {f['id']}: {f['why']}")
    for e in errors:
        print(f"  {e}")
    return 1 if empty or errors or not figures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
