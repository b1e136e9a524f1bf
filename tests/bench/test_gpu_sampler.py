"""nvidia-smi's CSV lines as the sampler reads them, and what it reports from them (no GPU here: the lines are the
shapes an H200's driver prints, with the "[N/A]" a GPU writes for a field it does not report)."""

from __future__ import annotations

from bench.gpu_sampler import GpuSample, GpuSampler, parse_sample


def test_lines_become_samples_and_fields_a_gpu_does_not_report_stay_unknown() -> None:
    assert parse_sample("0, 93, 118453, 1980, 612.35, 61\n") == GpuSample("gpu0", 93.0, 118453.0, 1980.0, 612.35, 61.0)
    assert parse_sample("1, 0, 571, [N/A], [N/A], 34") == GpuSample("gpu1", 0.0, 571.0, None, None, 34.0)
    assert parse_sample("0, [N/A], 571, 1980, 100, 30") is None  # no utilisation: nothing to average
    assert parse_sample("index, utilization.gpu [%], memory.used [MiB]") is None
    assert parse_sample("") is None


def test_the_summary_takes_the_lowest_and_median_clock_mean_power_and_hottest_reading() -> None:
    sampler = GpuSampler(gpus=1)
    for line in ("0, 90, 100, 1980, 600, 60", "0, 95, 120, 1500, 700, 70", "0, 80, 110, 1980, [N/A], 65"):
        sampler.record(line)
    sampler.record("1, 99, 999, 2000, 700, 80")  # a GPU this sampler was not asked to watch
    assert sampler.mean_utilisation() == {"gpu0": 88.3}
    assert sampler.peak_memory_mib() == {"gpu0": 120.0}
    assert sampler.clocks() == {
        "gpu0": {"sm_mhz_min": 1500.0, "sm_mhz_median": 1980.0, "power_w_mean": 650.0, "temperature_c_max": 70.0}
    }
