"""bench/bench_service.py in short against the test service: concurrent clients with a mix of
predict / search / append, zero errors, flat memory; then saturated: only 200 or 503."""
import pytest

from serving_helpers import bench_service, read


def test_short_load_zero_errors_flat_memory_and_503_when_saturated(server, world, new_server):
    if not new_server:
        pytest.skip("appends need the new service")
    load = bench_service.run_load(server, world, clients=4, seconds=5, label_prefix="load test")
    try:
        assert not load["errors"], load["errors"][:5]
        assert all(load["latency"][op] for op in ("predict", "search", "append")), \
            {op: len(v) for op, v in load["latency"].items()}
        assert load["rss_peak_mb"] - load["rss_start_mb"] < 150, load
        sat = bench_service.saturate(server, read(world["scenes"][0][0]), clients=40, seconds=2)
    finally:
        bench_service.cleanup(server, load["appended_labels"])
    assert set(sat["statuses"]) <= {200, 503} and sat["statuses"].get(503), sat["statuses"]
    assert sat["statuses"].get(200) and not sat["bad"] and not sat["missing_retry_after"]
    assert sat["rss_peak_mb"] - load["rss_start_mb"] < 150
    table, ok = bench_service.summarize(load, sat, 24, 150)
    assert ok, table
