"""explore() on real Dask worker processes: pickling, scatter, device placement, host lock."""

from __future__ import annotations

import pickle
import time

import pytest

import workbench as wb
from workbench.runtime import real_devices
from workbench.study import Study, worker_resources

distributed = pytest.importorskip("distributed")

FAST = dict(min_time=0.03, rounds=2, warmup=1, bench_items=4)
#: the ORT CPU, plus OpenVINO's CPU where the openvino extra is installed
DEVICES = tuple(["cpu"] + [d.name for d in real_devices() if d.name == "openvino:CPU"])


def _cluster(**kw):
    return distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=2, dashboard_address=None, **kw
    )


def _key(s: Study) -> list:
    return [(r.variant, r.device, r.hints, r.accuracy, r.scores, r.precision_ran, r.error)
            for r in s.records]  # fmt: skip


def _timed_section(seconds: float) -> tuple[float, float]:
    """A worker task holding the host's timing lock (the one explore's timing phases take)."""
    from workbench.study import _host_timing_lock

    with _host_timing_lock():
        t0 = time.time()
        time.sleep(seconds)
        return t0, time.time()


def test_public_functions_pickle():
    import importlib
    import pkgutil

    # whatever was imported first, the public names stay plain functions (no callable modules)
    for mod in pkgutil.walk_packages(wb.__path__, "workbench."):
        importlib.import_module(mod.name)
    for fn in (wb.explore, wb.report, wb.devices, wb.partition, wb.evaluate, wb.benchmark):
        assert callable(fn) and type(fn).__name__ == "function"
        assert pickle.loads(pickle.dumps(fn)) is fn


def test_worker_processes_match_local_and_respect_devices(demo_cnn, tmp_path):
    data = wb.demo.demo_dataset("test", n=80)
    kw = dict(variants=("f32", "int8"), hints=("performance", "accuracy"),
              devices=DEVICES, **FAST)  # fmt: skip
    local = wb.explore(demo_cnn, data, wb.demo.accuracy, **kw)
    resources = worker_resources()
    assert set(DEVICES) <= set(resources)
    with _cluster(resources=resources) as cluster, distributed.Client(cluster) as client:
        remote = wb.explore(demo_cnn, data, wb.demo.accuracy, client=client, **kw)
        # timing phases of workers on one host never overlap (one distributed lock per host)
        workers = list(client.scheduler_info(n_workers=-1)["workers"])
        spans = client.gather(
            [client.submit(_timed_section, 0.3, workers=[w], pure=False) for w in workers]
        )
        (a0, a1), (b0, b1) = sorted(spans)
        assert a1 <= b0
        # the CLI reaches the same cluster by its scheduler address
        from workbench.cli import main

        out = tmp_path / "remote.json"
        model = str(wb.demo.demo_model_path("cnn"))
        args = ["explore", model, "--variants", "f32", "--hints", "accuracy", "--min-time", "0.03"]
        assert main([*args, "--scheduler", cluster.scheduler_address, "-o", str(out)]) == 0
        assert [r.ok for r in Study.load(out).records] == [True]
    assert _key(remote) == _key(local)  # accuracy (per item) equals a local run's
    assert all(r.ok and r.runs >= 2 and r.latency_ci_ms for r in remote.records)
    assert all(r.host["name"] == wb.hostinfo.host_name() for r in remote.records)
    assert Study.merge(local, remote).hosts() == (wb.hostinfo.host_name(),)


@pytest.mark.slow
def test_jobs_only_run_where_the_device_is(demo_cnn):
    pytest.importorskip("openvino")
    data = wb.demo.demo_dataset("test", n=40)
    with _cluster(resources={"cpu": 1}) as cluster, distributed.Client(cluster) as client:
        s = wb.explore(demo_cnn, data, wb.demo.accuracy, variants=("f32",),
                       hints=("performance",), devices=("cpu", "openvino:CPU"), client=client,
                       **FAST)  # fmt: skip
    by = {r.device: r for r in s.records}
    assert by["cpu"].ok
    assert not by["openvino:CPU"].ok
    assert "no Dask worker advertises device 'openvino:CPU'" in by["openvino:CPU"].error
