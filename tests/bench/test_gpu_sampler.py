"""nvidia-smi's CSV lines as the sampler reads them, and what it reports from them (no GPU here: the lines are the
shapes an H200's driver prints, with the "[N/A]" a GPU writes for a field it does not report)."""

from __future__ import annotations

from datetime import datetime

from bench.gpu_sampler import GpuSample, GpuSampler, parse_sample

AT = "2026/12/05 18:18:17.921"  # nvidia-smi's timestamp field, local time


def test_lines_become_samples_and_fields_a_gpu_does_not_report_stay_unknown() -> None:
    at = datetime(2026, 12, 5, 18, 18, 17, 921000).timestamp()
    assert parse_sample(f"{AT}, 0, 93, 118453, 1980, 612.35, 61\n") == GpuSample(
        "gpu0", 93.0, 118453.0, 1980.0, 612.35, 61.0, at
    )
    assert parse_sample(f"{AT}, 1, 0, 571, [N/A], [N/A], 34") == GpuSample("gpu1", 0.0, 571.0, None, None, 34.0, at)
    assert parse_sample(f"{AT}, 0, [N/A], 571, 1980, 100, 30") is None  # no utilisation: nothing to average
    assert parse_sample("timestamp, index, utilization.gpu [%], memory.used [MiB], a, b, c") is None
    assert parse_sample("") is None
    assert parse_sample("[N/A], 0, 93, 1, 1980, 600, 60") == GpuSample("gpu0", 93.0, 1.0, 1980.0, 600.0, 60.0, None)


def test_the_summary_takes_the_lowest_and_median_clock_mean_power_and_hottest_reading() -> None:
    sampler = GpuSampler(gpus=1)
    for second, line in enumerate(
        ("0, 90, 100, 1980, 600, 60", "0, 95, 120, 1500, 700, 70", "0, 80, 110, 1980, [N/A], 65")
    ):
        sampler.record(f"2026/12/05 18:18:1{second}.000, {line}")
    sampler.record(f"{AT}, 1, 99, 999, 2000, 700, 80")  # a GPU this sampler was not asked to watch
    assert sampler.mean_utilisation() == {"gpu0": 88.3}
    assert sampler.peak_memory_mib() == {"gpu0": 120.0}
    assert sampler.clocks() == {
        "gpu0": {"sm_mhz_min": 1500.0, "sm_mhz_median": 1980.0, "power_w_mean": 650.0, "temperature_c_max": 70.0}
    }

    # One job's section: the samples taken inside it only (here the second and third).
    start = datetime(2026, 12, 5, 18, 18, 11).timestamp()
    assert sampler.clocks_between("gpu0", start, start + 1.5) == {
        "samples": 2,
        "sm_mhz_min": 1500.0,
        "sm_mhz_median": 1740.0,
        "power_w_mean": 700.0,
        "temperature_c_max": 70.0,
    }
    assert sampler.clocks_between("gpu1", start, start + 1.5) == {"samples": 0}
