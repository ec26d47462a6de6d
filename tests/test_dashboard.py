"""The dashboard a researcher opens first, checked in a real browser.

One campaign of two submissions (nadamw, adamw) on two workloads (mnist1d, ctr), logged by
``algoperf run`` to a real ``mlflow server`` on a free loopback port, scored with
``algoperf score``; then the URL ``algoperf ui`` prints, opened in headless Chromium.
Screenshots for a person: test-output/dashboard/*.png.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from algoperf.cli import app
from algoperf.tracking import MlflowServer
from algoperf.tracking.description import NOTE_TAG
from tests.browser import CHROMIUM, Browser, Page

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "dashboard"
SUBMISSIONS = ("nadamw", "adamw")
# mnist1d and ctr with targets a few dozen steps reach (chance accuracy is 0.1, the first
# loss about 0.69), so the campaign has times to target in seconds, not minutes.
QUICK_TARGETS = {"mnist1d": 0.15, "ctr": 0.66}
WORKLOADS = tuple(f"{w}_quick" for w in QUICK_TARGETS)


@pytest.fixture(scope="module")
def quick_workloads():
    from algoperf import registry

    for base, target in QUICK_TARGETS.items():
        cls = registry.get_workload_class(base)
        registry.register_workload(f"{base}_quick", type(f"Quick{cls.__name__}", (cls,), {
            "validation_target_value": target, "base_workload": None}))
    yield WORKLOADS
    for name in WORKLOADS:
        registry._workload_classes().pop(name, None)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, quick_workloads):
    folder = tmp_path_factory.mktemp("dashboard")
    server = MlflowServer(f"sqlite:///{folder / 'mlflow.db'}", artifacts_destination=folder / "artifacts",
                          log_path=folder / "server.log").start()
    name = f"campaign-{uuid.uuid4().hex[:6]}"
    try:
        args = ["run", "--experiment", name, "--experiment-dir", str(folder / "logs"), "--max-steps", "30",
                "--executor", "local", "--tracking-uri", server.url, "--json"]
        for s in SUBMISSIONS:
            args += ["-s", s]
        for w in WORKLOADS:
            args += ["-w", w]
        ran = CliRunner().invoke(app, args)
        assert ran.exit_code == 0, ran.output
        scored = CliRunner().invoke(app, ["score", "--experiment", name, "--tracking-uri", server.url])
        assert scored.exit_code == 0, scored.output
        shown = CliRunner().invoke(app, ["ui", "--experiment", name, "--tracking-uri", server.url])
        assert shown.exit_code == 0, shown.output
        url = re.search(r"http://\S+", shown.stdout).group(0)
        yield {"name": name, "url": url, "server": server, "rows": json.loads(ran.stdout), "score": scored.output}
    finally:
        server.stop()


def test_two_submissions_land_in_one_experiment_with_the_answer_as_its_description(campaign):
    client = MlflowClient(campaign["server"].url)
    exp = client.get_experiment_by_name(campaign["name"])
    trials = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'trial'")
    assert sorted((r.data.tags["algoperf.submission"], r.data.tags["algoperf.workload"]) for r in trials) == sorted(
        (s, w) for s in SUBMISSIONS for w in WORKLOADS)
    assert {r.info.run_name for r in trials} == {f"{s} · {w} · study 0 · trial 1" for s in SUBMISSIONS for w in WORKLOADS}
    for run in trials:
        row = next(r for r in campaign["rows"] if r["submission"] == run.data.tags["algoperf.submission"]
                   and r["workload"] == run.data.tags["algoperf.workload"])
        if row["best_validation"] is None:  # no finite validation value (e.g. diverged at once)
            assert "best_validation" not in run.data.metrics
        else:
            assert run.data.metrics["best_validation"] == pytest.approx(row["best_validation"])
    note = exp.tags[NOTE_TAG]
    assert "| # | submission | score" in note and all(f"| {s} |" in note for s in SUBMISSIONS)
    assert "One study per submission gives no interval" in note  # one study: said, not [x, x]
    (score_run,) = client.search_runs([exp.experiment_id], "tags.`algoperf.kind` = 'score'")
    artifacts = {a.path for a in client.list_artifacts(score_run.info.run_id)}
    assert {"performance_profile_external.png", "time_to_target_external.png", *(f"curves_{w}.png" for w in WORKLOADS)} <= artifacts
    assert all(f"run_uuid={score_run.info.run_id}" in note and name in note for name in (f"curves_{WORKLOADS[1]}.png", "performance_profile_external.png"))
    # The terminal: only the two workloads, no warning about the registry's others.
    assert "left out" not in campaign["score"] and "valgoperf" not in campaign["score"]
    reached = [r for r in trials if r.data.tags["algoperf.status"] == "reached_target"]
    assert reached and all(r.data.metrics["time_to_target"] > 0 for r in reached)
    assert "One study per submission gives no interval" in campaign["score"]


TOGGLE_DESCRIPTION = """(() => { const t = [...document.querySelectorAll('*')].find(x => x.children.length === 0
    && (x.textContent || '').startsWith('AlgoPerf scores')); let box = t;
    for (let i = 0; i < 4 && box && box.querySelectorAll('button').length < 2; i++) box = box.parentElement;
    const b = box ? [...box.querySelectorAll('button')] : []; if (b.length) b[b.length - 1].click(); })()"""


async def _look(page: Page, url: str, name: str) -> dict:
    await page.goto(url)
    await page.until(page.has(name), f"the experiment {name!r}")
    await page.until(page.has(f"nadamw · {WORKLOADS[0]} · study 0 · trial 1"), "the trial runs")
    await page.until(page.has("time_to_target"), "the time_to_target column")
    # MLflow's assistant panel covers a third of the page; no URL closes it (docs/dashboard.md).
    await page.js("""(() => { const b = [...document.querySelectorAll('button')].find(
        x => (x.getAttribute('aria-label') || '') === 'Close'); if (b) b.click(); })()""")
    await asyncio.sleep(1.5)
    seen = {}
    seen["runs"] = await page.text()
    seen["storage"] = await page.js("JSON.stringify(Object.keys(localStorage))")
    await page.shot(SHOTS / "runs.png")
    # The description (the score) sits above the table; scrolled into view for its own picture.
    seen["description_html"] = await page.js("document.body.innerHTML.includes('One study per submission')")
    # Unfold it (the chevron beside its title) for its own picture.
    await page.js(TOGGLE_DESCRIPTION)
    await asyncio.sleep(1.5)
    seen["description"] = await page.text()
    await page.shot(SHOTS / "description.png")
    await page.js(TOGGLE_DESCRIPTION)  # folded again: the charts draw only when in view
    await asyncio.sleep(1.0)
    await page.js("document.querySelector('input[name=runs-view-mode][value=CHART]').click()")
    search = "document.querySelector('input[placeholder=\"Search metric charts\"]')"
    await page.until(f"!!{search}", "the chart view")
    await page.js(f"""(() => {{ const i = {search};
        const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        set.call(i, 'validation/accuracy'); i.dispatchEvent(new Event('input', {{bubbles: true}})); }})()""")
    await page.until("document.querySelectorAll('.js-plotly-plot svg.main-svg').length > 0", "a metric chart")
    await asyncio.sleep(2.0)  # let the curves draw
    seen["charts"] = await page.text()
    seen["traces"] = await page.js("""(() => { const p = document.querySelector('.js-plotly-plot');
        return p ? p.querySelectorAll('.scatterlayer .trace').length : 0; })()""")
    seen["xaxis"] = await page.js("""[...document.querySelectorAll('.js-plotly-plot .xtitle')].map(x => x.textContent)""")
    await page.shot(SHOTS / "charts.png")
    return seen


def test_dashboard_shows_the_campaign_score_columns_and_curves_against_time(campaign):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): `apt-get install -y chromium`")
    pytest.importorskip("aiohttp", reason="aiohttp (a Ray dependency) drives Chromium's DevTools protocol")

    async def go():
        async with Browser() as page:
            return await _look(page, campaign["url"], campaign["name"])

    seen = asyncio.run(go())
    runs = seen["runs"]
    for s in SUBMISSIONS:
        for w in WORKLOADS:
            assert f"{s} · {w} · study 0 · trial 1" in runs  # both submissions, one experiment
    print("localStorage keys after closing the assistant:", seen["storage"])
    # The columns that matter, as column headers (each its own line of the page's text).
    assert "\ntime_to_target\n" in runs and "\nalgoperf.workload\n" in runs and "\nalgoperf.status\n" in runs
    assert "| # | submission" not in seen["description"] and "Time to target per workload" in seen["description"]
    assert seen["description_html"]  # the score as the experiment's description
    assert any("accumulated_submission_time" in x for x in seen["xaxis"]), seen["xaxis"]
    assert seen["traces"] >= len(SUBMISSIONS), seen  # validation/accuracy (mnist1d): a line per trial
    for png in ("runs.png", "description.png", "charts.png"):
        assert (SHOTS / png).stat().st_size > 10_000
