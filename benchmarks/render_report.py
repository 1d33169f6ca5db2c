"""Render a study's report.html with headless Chromium: a full-page PNG and how many figures loaded.

Run: python benchmarks/render_report.py STUDY_DIR OUT.png [--width 1200] [--max-height 20000]
Needs chromium (or chromium-browser) on PATH; exits 1 when a figure did not load.
"""

import argparse
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger("render_report")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"]


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        sys.exit("no chromium on PATH (apt-get install chromium)")
    return found


def body_attributes(chromium: str, page: Path) -> dict[str, int]:
    """The data-* counters the page's load script wrote on <body>."""
    dom = subprocess.run([chromium, *FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    body = re.search(r"<body[^>]*>", dom)
    return {key: int(value) for key, value in re.findall(r'data-([a-z-]+)="(\d+)"', body.group(0) if body else "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--max-height", type=int, default=20000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    page = (args.study_dir / "report.html").resolve()
    if not page.is_file():
        sys.exit(f"{page} not found: a finished `medaug run` writes it beside summary.md")
    chromium = browser()
    counts = body_attributes(chromium, page)
    loaded, total = counts.get("figures-loaded", 0), counts.get("figures-total", 0)
    height = min(counts.get("page-height", 3000), args.max_height)
    subprocess.run([chromium, *FLAGS, f"--screenshot={args.out.resolve()}", f"--window-size={args.width},{height}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    logger.info("%s: %d of %d figures loaded; screenshot %s (%d×%d px)", page, loaded, total, args.out, args.width,
                height)
    if total == 0 or loaded < total:
        sys.exit(1)


if __name__ == "__main__":
    main()
