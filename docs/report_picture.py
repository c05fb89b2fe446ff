"""Draw docs/report.png, a picture of reports/<name>/report.html for the README: its title, headline numbers,
tier table and charts, laid out as the page shows them. (There is no browser on the build machines to take a
screenshot; the charts are the report's own PNGs, taken out of the HTML.)

Usage: python docs/report_picture.py reports/cdnow docs/report.png
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main(folder: Path, target: Path) -> None:
    html = (folder / "report.html").read_text()
    summary = json.loads((folder / "summary.json").read_text())
    tiers = pd.read_csv(folder / "tiers.csv")
    charts = [mpimg.imread(io.BytesIO(base64.b64decode(b))) for b in re.findall(r"base64,([A-Za-z0-9+/=]+)", html)]
    fig = plt.figure(figsize=(12, 15), facecolor="white")
    totals = summary["forecast_totals"]
    fig.text(0.04, 0.975, f"Customer lifetime value: {summary['name']}", fontsize=20, weight="bold")
    fig.text(
        0.04,
        0.958,
        f"{summary['purchase_model']['name']} + {summary['spend_model']['name']} ({summary['purchase_model']['method']}); "
        f"horizon {totals['horizon']:g} {totals['unit']}; report.html, self-contained",
        fontsize=11,
        color="#5b6475",
    )
    cards = [
        ("customers", f"{summary['data']['rfm_customers']:,}"),
        ("total CLV (discounted)", f"{totals['total_clv']:,.0f}"),
        ("expected revenue", f"{totals['expected_revenue']:,.0f}"),
        ("expected purchases", f"{totals['expected_purchases']:,.0f}"),
    ]
    for k, (label, value) in enumerate(cards):
        x = 0.04 + k * 0.235
        fig.patches.append(plt.Rectangle((x, 0.905), 0.22, 0.042, transform=fig.transFigure, color="#f4f6fa"))
        fig.text(x + 0.01, 0.928, value, fontsize=15, weight="bold")
        fig.text(x + 0.01, 0.911, label, fontsize=9, color="#5b6475")
    table = tiers[["tier", "customers", "share_of_clv", "mean_p_alive"]].copy()
    table["share_of_clv"] = (100 * table["share_of_clv"]).round(1).astype(str) + "%"
    table["mean_p_alive"] = table["mean_p_alive"].round(3)
    ax = fig.add_axes((0.04, 0.80, 0.92, 0.09))
    ax.axis("off")
    ax.table(cellText=table.to_numpy(), colLabels=list(table.columns), loc="center", cellLoc="right").scale(1, 1.4)
    boxes = [(0.02, 0.56, 0.47, 0.23), (0.51, 0.56, 0.47, 0.23), (0.02, 0.31, 0.47, 0.23), (0.51, 0.31, 0.47, 0.23)]
    boxes += [(0.25, 0.06, 0.5, 0.23)]
    for image, box in zip(charts, boxes, strict=False):
        axis = fig.add_axes(box)
        axis.imshow(image)
        axis.axis("off")
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=80)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
