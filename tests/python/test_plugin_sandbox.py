"""Hostile plugins under the real gateway: `hangar run` with a hostile strategy plugin dropped
into its plugins folder, driven over HTTP by the official Python SDK client. For every case the
gateway stays up, the group's call ends in the documented fallback (round robin) or a clear
refusal, another server keeps answering, /healthz stays fast, the fault is counted, and the
process's memory stays bounded."""
import asyncio
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import REPO
from hangar_proc import notes_server, wait_for
from test_gateway import call, mcp_error, metric, names, start  # noqa: F401 (start is a fixture)

TARGET = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))


def build(crate: str, stem: str) -> str:
    """Builds a test plugin the way plugin authors do; cargo skips it when nothing changed."""
    target = os.path.join(TARGET, "test-plugins")
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--locked", "--target", "wasm32-wasip2",
         "--manifest-path", str(REPO / crate / "Cargo.toml"), "--target-dir", target],
        check=True,
    )
    return os.path.join(target, "wasm32-wasip2", "release", f"{stem}.wasm")


@pytest.fixture(scope="module")
def hostile_wasm():
    return build("tests/plugins/hostile", "hangar_test_hostile_plugin")


@pytest.fixture(scope="module")
def allow_all_wasm():
    return build("tests/plugins/hostile-policy", "hangar_test_hostile_policy")


def group(mode: str) -> str:
    return (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata: {name: picked}\n"
        "spec:\n  selector: {matchLabels: {app: picked}}\n  strategy: hostile\n"
        f"  strategyConfig: {{mode: {mode}}}\n  failover: {{maxRetries: 1, retryDelay: 10ms}}\n"
    )


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def healthz_ms(base: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        with urllib.request.urlopen(base + "/healthz", timeout=10) as r:
            assert r.status == 200
        out.append((time.perf_counter() - began) * 1000)
    return sorted(out)


# mode, the fault it must be counted as (None: within its limits, so no fault), calls to make
CASES = [
    ("trap", "trap", 3),  # a Rust panic: its message goes to stderr, then the call traps
    ("sleep", "host_call", 3),  # thread::sleep(3 s) in pick: plugins may not block
    ("loop", "timeout", 3),
    ("alloc", "out_of_memory", 3),
    ("burn", None, 40),  # 9 ms of CPU per pick, just under the deadline
    ("leak", None, 120),  # 256 KiB kept per pick: the instance is recycled before its cap
]


@pytest.mark.parametrize("mode,fault,calls", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_strategy_costs_only_its_own_calls(start, tmp_path, hostile_wasm, mode, fault, calls):
    folder = tmp_path / "run"
    (folder / "plugins").mkdir(parents=True)
    shutil.copy(hostile_wasm, folder / "plugins" / "hostile.wasm")
    files = {f"{m}.yaml": notes_server(f"picked-{m}", "{app: picked}") for m in "ab"}
    files["solo.yaml"] = notes_server("solo")
    files["group.yaml"] = group(mode)
    h = start(files, folder=folder)
    wait_for(lambda: {"picked__word_count", "solo__word_count"} <= set(names(h.url)), timeout=60)
    rss_before = rss_kib(h.proc.pid)

    async def attack():
        results = []
        for i in range(calls):
            r = await call(h.url, "picked__word_count", {"text": "x " * (i % 5 + 1)})
            results.append(r.structured_content["result"])
        return results

    async def others():
        r = await call(h.url, "solo__word_count", {"text": "a b"})
        return r.structured_content["result"]

    async def both():
        return await asyncio.gather(attack(), others(), asyncio.to_thread(healthz_ms, h.base, 50))

    began = time.monotonic()
    results, other, latencies = asyncio.run(both())
    took = time.monotonic() - began
    assert results == [i % 5 + 1 for i in range(calls)], "every call of the group was answered (by the fallback)"
    assert other == 2, "another server's call succeeded during the attack"
    assert h.proc.poll() is None, "the gateway is still running"
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    if fault:
        counted = metric(h, "hangar_plugin_faults_total", f'fault="{fault}",plugin="hostile",world="strategy"')
        assert counted >= 1, f"{mode}: fault {fault} counted"
        assert metric(h, "hangar_plugin_picks_total", 'group="picked",member="picked-a",plugin="round-robin (fallback)"') + \
            metric(h, "hangar_plugin_picks_total", 'group="picked",member="picked-b",plugin="round-robin (fallback)"') >= 1
    else:
        total = sum(metric(h, "hangar_plugin_faults_total", f'fault="{f}",plugin="hostile",world="strategy"')
                    for f in ("trap", "timeout", "out_of_memory", "host_call", "overloaded"))
        assert total == 0, f"{mode} stays within its limits"
    rss_after = rss_kib(h.proc.pid)
    print(f"{mode}: {calls} calls in {took:.1f}s, /healthz p50 {latencies[len(latencies) // 2]:.1f} ms "
          f"p99 {p99:.1f} ms, RSS {rss_before} -> {rss_after} KiB")
    # Generous bounds for a busy 2-core machine and a debug build; the report has the numbers.
    assert p99 < 250, f"/healthz p99 {p99:.1f} ms during the attack"
    assert rss_after < 150 * 1024, f"RSS {rss_after} KiB"
    log = (folder / "hangar.log").read_text()
    # The plugin's own panic is its message; the host's threads never panic.
    assert "Cannot start a runtime" not in log and "tokio-runtime-worker' panicked" not in log, log[-2000:]
    if mode == "trap":
        assert "hostile plugin traps on purpose" in log, "the plugin's panic message is logged"


def test_a_strategy_that_sleeps_in_configure_is_refused_and_the_gateway_keeps_serving(start, tmp_path, hostile_wasm):
    folder = tmp_path / "run"
    (folder / "plugins").mkdir(parents=True)
    shutil.copy(hostile_wasm, folder / "plugins" / "hostile.wasm")
    files = {f"{m}.yaml": notes_server(f"picked-{m}", "{app: picked}") for m in "ab"}
    files["solo.yaml"] = notes_server("solo")
    files["group.yaml"] = group("sleep-in-configure")
    h = start(files, folder=folder)
    wait_for(lambda: "solo__word_count" in names(h.url), timeout=60)
    assert h.proc.poll() is None
    wait_for(lambda: metric(h, "hangar_plugin_faults_total", 'fault="host_call",plugin="hostile",world="strategy"') >= 1)
    # A live edit after it still applies (the apply task survived).
    (folder / "group.yaml").write_text(group("good"))
    wait_for(lambda: "picked__word_count" in names(h.url), timeout=30)
    r = asyncio.run(call(h.url, "picked__word_count", {"text": "a b c"}))
    assert r.structured_content["result"] == 3


def test_a_custom_policy_can_narrow_but_never_widen_the_manifest(start, tmp_path, allow_all_wasm):
    folder = tmp_path / "run"
    (folder / "plugins").mkdir(parents=True)
    shutil.copy(allow_all_wasm, folder / "plugins" / "allow-all.wasm")
    tools = "tools:\n  policy: allow-all\n  denyList: [add_note]\n  rateLimit: {requestsPerMinute: 1, burst: 2}\n"
    h = start({"notes.yaml": notes_server("notes", tools=tools)}, folder=folder)
    listed = wait_for(lambda: (n := names(h.url)) and "notes__word_count" in n and n, timeout=60)
    assert "notes__add_note" not in listed, "the manifest's denyList hides the tool whatever the plugin shows"
    denied = mcp_error(call(h.url, "notes__add_note", {"text": "x"}))
    assert "denyList" in str(denied), str(denied)
    # The manifest's rate limit is charged beside the plugin's (none): a burst of 2, then refused.
    for _ in range(2):
        assert asyncio.run(call(h.url, "notes__word_count", {"text": "a b"})).structured_content["result"] == 2
    limited = mcp_error(call(h.url, "notes__word_count", {"text": "a"}))
    assert limited.code == -32029 and "spec.tools.rateLimit" in str(limited), str(limited)
