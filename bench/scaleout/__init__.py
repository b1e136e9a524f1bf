"""``python -m bench.scaleout``: customers per hour with 1, 2, ... worker processes sharing one queue.

Each phase starts a fresh queue and ``k`` real ``headshot-worker`` processes (worker ``i`` pinned to GPU ``i`` with
``CUDA_VISIBLE_DEVICES`` when GPUs are present), waits until every worker has loaded its model, then enqueues a
burst of simulated customers at once: one training job each and, as each customer's ``trained`` event arrives, the
generation jobs for their headshots, exactly as the bot would. It reads the workers' event stream and arq's results
to prove that every job ran once and none was lost, samples ``nvidia-smi`` for per-GPU utilisation, and prints (and
writes) the figures.
"""

from bench.scaleout.cli import main
from bench.scaleout.phase import run_phase
from bench.scaleout.plan import PhaseResult, ScaleoutPlan

__all__ = ["PhaseResult", "ScaleoutPlan", "main", "run_phase"]
