"""Human-readable summaries of training runs."""

from __future__ import annotations

from rich.table import Table

from trainer.training import TrainingResult


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def training_table(result: TrainingResult) -> Table:
    """The test-period scores of the new model, the baseline and MMR, and the decision."""
    m = result.metrics
    table = Table(
        title=f"{result.model_name} v{result.version} — test {result.split.get('test_span', '')}",
        caption=(
            f"[bold]{'promoted' if result.promoted else 'not promoted'}[/]: "
            f"{result.decision.reason}. Champion is now v{result.champion_version}."
        ),
    )
    for column in ("model", "MAPE", "median APE", "MAE", "R²", "rows"):
        table.add_column(column, justify="right" if column != "model" else "left")
    rows = [
        ("XGBoost (registered)", "test"),
        ("Ridge baseline", "baseline"),
        ("MMR estimate", "test_mmr"),
    ]
    for label, prefix in rows:
        table.add_row(
            label,
            _pct(m.get(f"{prefix}_mape")),
            _pct(m.get(f"{prefix}_median_ape")),
            f"{m.get(f'{prefix}_mae', float('nan')):,.0f}",
            f"{m.get(f'{prefix}_r2', float('nan')):.3f}",
            f"{m.get(f'{prefix}_rows', 0):,.0f}",
        )
    table.add_row(
        "XGBoost on MMR rows", _pct(m.get("test_mape_on_mmr_rows")), "", "", "", "", style="dim"
    )
    if "champion_test_mape" in m:
        table.add_row("previous champion", _pct(m["champion_test_mape"]), "", "", "", "")
    return table
