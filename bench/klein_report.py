"""The klein benchmark's summary: GPU-seconds per customer from the measured rates, and the table it prints."""

from __future__ import annotations

from typing import Any

__all__ = ["CUSTOMER_HEADSHOTS", "CUSTOMER_LABELS", "SDXL_CUSTOMER", "customer_costs", "print_table"]

CUSTOMER_HEADSHOTS = 40
# The training lengths a customer is costed at: the worker's setting, and TrainingConfig's default (SDXL's figure).
CUSTOMER_LABELS = ("worker_train_steps", "training_config_steps")
# BENCHMARKS.md, 2026-11-24 fifth session: one H100, 1000 image-steps + 40 headshots (30 steps with CFG) + 1 switch.
SDXL_CUSTOMER = {"project_s": 134, "reference_s": 625, "worker_end_to_end_s": 143, "image_steps": 1000, "gpu": "H100"}


def customer_costs(results: dict[str, Any], native: int, image_steps: dict[str, int]) -> dict[str, Any]:
    """GPU-seconds per customer from the measured rates: training at the model's own size (or the largest measured)
    and 40 distilled headshots at the largest batch (4 by default, as a worker renders); the project's calls include
    swapping the user's LoRA in and out. The reference side is the script's rate and the plain eager pipeline."""
    train = results["train"]
    size = str(native) if str(native) in train else max(train, key=int)
    rates = {side: train[size][side]["image_steps_per_s"] for side in ("project", "reference")}
    batch = max(results["render"]["distilled"], key=lambda key: int(key.removeprefix("b")))  # b4, as a worker
    renders = results["render"]["distilled"][batch]
    per_image = {"project": renders["project"]["s_per_image"], "reference": renders["plain_eager"]["s_per_image"]}
    costs: dict[str, Any] = {"training_resolution": int(size), "headshots": CUSTOMER_HEADSHOTS, "render_batch": batch}
    for label, steps in image_steps.items():
        costs[label] = {"image_steps": steps}
        for side in ("project", "reference"):
            costs[label][f"{side}_s"] = steps / rates[side] + CUSTOMER_HEADSHOTS * per_image[side]
    costs["project_training_fixed_s"] = train[size]["project"].get("fixed_s")
    costs["sdxl_from_benchmarks_md"] = SDXL_CUSTOMER
    return costs


def print_table(results: dict[str, Any]) -> None:
    """The figures side by side, baseline first, as BENCHMARKS.md tables them."""

    def figure(node: Any, key: str) -> str:
        if not isinstance(node, dict):
            return "-"
        if "error" in node:
            return "failed"
        value = node.get(key)
        return f"{value:.3f}" if isinstance(value, int | float) else "n/a"

    rows: list[tuple[str, ...]] = [("what", "baseline", "project", "plain compiled")]
    for px, sides in results.get("train", {}).items():
        reference, project = sides.get("reference"), sides.get("project")
        rows.append(
            (
                f"training {px} px, image-steps/s",
                figure(reference, "image_steps_per_s"),
                figure(project, "image_steps_per_s"),
                "",
            )
        )
    for mode, batches in results.get("render", {}).items():
        if mode not in ("distilled", "base"):
            continue
        for batch, sides in batches.items():
            rows.append(
                (
                    f"render {mode} {batch}, s/image",
                    *(figure(sides.get(side), "s_per_image") for side in ("plain_eager", "project", "plain_compiled")),
                )
            )
    preview = results.get("preview", {})
    for label, node in preview.get("plain_eager", {}).items():
        rows.append((f"preview latency (plain, {label}), s", figure(node, "latency_s"), "", ""))
    if "project" in preview:
        rows.append(("preview latency (project), s", "", figure(preview["project"], "latency_s"), ""))
    customer = results.get("gpu_s_per_customer", {})
    for label in CUSTOMER_LABELS:
        node = customer.get(label, {})
        steps = node.get("image_steps", "?") if isinstance(node, dict) else "?"
        rows.append(
            (f"GPU-s per customer ({steps} image-steps)", figure(node, "reference_s"), figure(node, "project_s"), "")
        )
    sdxl = SDXL_CUSTOMER
    rows.append(
        (
            f"  SDXL, BENCHMARKS.md ({sdxl['image_steps']}, {sdxl['gpu']})",
            str(sdxl["reference_s"]),
            str(sdxl["project_s"]),
            "",
        )
    )
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)), flush=True)
