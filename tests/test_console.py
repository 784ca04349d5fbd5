"""The web console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, against ``zart-es api`` with a token and a worker
as subprocesses on a real Redis. Screenshots go to ``tests/artifacts/screenshots/``.

Also the console's read routes over plain HTTP: the timeline, the chain check, queue
slots, the audit stream and the static pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from zart_es.store._embedded import RedisServer, free_port

from .helpers import ROOT, spawn_worker, stop_worker, zart

pytestmark = pytest.mark.processes

TOKEN = "console-token"
OPERATOR = "ada"
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


AUDIT_KEY = "console:" + "6d" * 32
"""The deployment chains under an audit key (the badge says so)."""


class Deployment:
    """The API's base URL and the flag directory of the test app."""

    def __init__(self, url: str, flags: Path) -> None:
        self.url = url
        self.flags = flags

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = httpx.request(method, f"{self.url}{path}", headers=AUTH, timeout=10, **kwargs)
        assert reply.status_code < 400, reply.text
        return reply.json()

    def history(self, eid: str) -> list[dict[str, Any]]:
        """The whole log (a page of up to 1000 events holds these tests' logs)."""
        reply = self.call("GET", f"/executions/{eid}/history")
        return list(reply["items"] if isinstance(reply, dict) else reply)

    def wait_status(self, eid: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            detail: dict[str, Any] = self.call("GET", f"/executions/{eid}")
            if detail["status"] in statuses:
                return detail
            time.sleep(0.05)
        raise TimeoutError(f"{eid} never reached {statuses}: {detail['status']}")


@pytest.fixture(scope="module")
def deployment(redis_server: RedisServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with redis_sync.Redis.from_url(redis_server.url) as r:
        r.flushall()
    flags = tmp_path_factory.mktemp("console-flags")
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "zart_es", "api", "--redis-url", redis_server.url,
         "--port", str(port), "--token", TOKEN],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "ZART_AUDIT_KEY": AUDIT_KEY})
    worker = spawn_worker(redis_server.url, "tests.apps.console",
                          env={"CONSOLE_FLAG_DIR": str(flags), "ZART_AUDIT_KEY": AUDIT_KEY},
                          log=tmp_path_factory.mktemp("console") / "worker.log")
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url)
        deployment = Deployment(url, flags)
        for name, data, eid in [("console-order", "o1", "order-1"),
                                ("console-checkout", "c1", "checkout-1"),
                                ("console-approval", "a1", "approval-1"),
                                ("console-queued", 1, "queued-1")]:
            deployment.call("POST", "/executions", json={"name": name, "input": data, "id": eid})
        deployment.wait_status("queued-1", "waiting")  # it holds the slot: queued-2 waits
        deployment.call("POST", "/executions",
                        json={"name": "console-queued", "input": 2, "id": "queued-2"})
        deployment.wait_status("order-1", "completed")
        deployment.wait_status("checkout-1", "failed")
        deployment.wait_status("approval-1", "waiting")
        yield deployment
    finally:
        stop_worker(worker)
        api.terminate()
        api.wait(timeout=10)


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("API did not come up")


# -- the console's routes over HTTP ------------------------------------------------------


def test_the_pages_are_public_and_the_data_needs_the_token(deployment: Deployment) -> None:
    for path in ("/ui/", "/ui", "/ui/console.js", "/ui/execution.js", "/ui/console.css"):
        reply = httpx.get(f"{deployment.url}{path}", timeout=5)
        assert reply.status_code == 200, path
    assert "<script" not in httpx.get(f"{deployment.url}/ui/console.js").text
    assert "https://" not in httpx.get(f"{deployment.url}/ui/").text  # nothing from a CDN
    for path in ("/executions/order-1/timeline", "/executions/order-1/verify", "/queues",
                 "/audit"):
        assert httpx.get(f"{deployment.url}{path}", timeout=5).status_code == 401, path
    missing = httpx.get(f"{deployment.url}/executions/nope/timeline", headers=AUTH)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    schema = deployment.call("GET", "/schema/openapi.json")
    assert "/executions/{execution_id}/timeline" in schema["paths"]
    assert not any(p.startswith("/ui") for p in schema["paths"])


def test_the_timeline_route_places_every_call(deployment: Deployment) -> None:
    timeline = deployment.call("GET", "/executions/order-1/timeline")
    rows = {row["name"]: row for row in timeline["rows"]}
    assert list(rows) == ["execution", "reserve", "charge", "sleep-0", "event:approval#0",
                          "child:order-1.child-0", "ship"]
    first, backoff, second = rows["charge"]["spans"]
    assert (first["outcome"], backoff["kind"], second["outcome"]) == ("retry", "backoff",
                                                                      "completed")
    assert first["took_us"] >= 75_000  # the step function slept 80 ms (by the loop's clock)
    assert first["end_ms"] <= backoff["start_ms"] <= backoff["end_ms"] <= second["start_ms"]
    sleep = rows["sleep-0"]["spans"][0]
    assert sleep["end_ms"] - sleep["start_ms"] >= 400  # never fires early
    assert rows["event:approval#0"]["spans"][0]["outcome"] == "timed_out"
    assert rows["child:order-1.child-0"]["spans"][0]["outcome"] == "completed"
    assert timeline["end_ms"] == rows["execution"]["spans"][0]["end_ms"]
    waiting = deployment.call("GET", "/executions/approval-1/timeline")
    [wait] = next(r["spans"] for r in waiting["rows"] if r["kind"] == "wait")
    assert wait["end_ms"] is None  # still going: an explicit null
    assert waiting["end_ms"] >= wait["start_ms"]
    check = deployment.call("GET", "/executions/order-1/verify")
    assert check == {"id": "order-1", "intact": True, "events": check["events"],
                     "broken_at": None, "reason": "", "keyed": True, "sealed": None,
                     "findings": []}
    assert check["events"] == len(deployment.history("order-1"))


def test_history_timeline_on_the_command_line(redis_server: RedisServer,
                                              deployment: Deployment) -> None:
    """``zart-es history ID --timeline``: JSON when piped (the same as the route), a
    one-line error for an unknown id."""
    done = zart(redis_server.url, "history", "order-1", "--timeline")
    assert done.returncode == 0, done.stderr
    drawn = json.loads(done.stdout)
    served = deployment.call("GET", "/executions/order-1/timeline")
    assert drawn["rows"] == served["rows"]
    assert drawn["marks"] == served["marks"]
    missing = zart(redis_server.url, "history", "nope", "--timeline")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1
    assert "nope" in missing.stderr


def test_queue_slots_and_the_audit_stream(deployment: Deployment) -> None:
    [slots] = deployment.call("GET", "/queues")
    assert (slots["queue"], slots["key"]) == ("console-slots", "")
    assert [h["execution_id"] for h in slots["running"]] == ["queued-1"]
    assert [h["execution_id"] for h in slots["waiting"]] == ["queued-2"]
    waiter = slots["waiting"][0]
    assert abs(waiter["since_ms"] - time.time() * 1000) < 120_000
    deployment.call("POST", "/admin/pauses", json={"queue": "console-other", "by": "grace"})
    deployment.call("DELETE", "/admin/pauses/queue/console-other?by=grace")
    newest, older = deployment.call("GET", "/audit?limit=2")
    assert (newest["what"], older["what"]) == ("resume", "pause")
    assert newest["detail"] == {"rule": "queue:console-other", "by": "grace"}
    assert deployment.call("GET", f"/audit?limit=5&before={newest['id']}")[0] == older
    assert deployment.call("GET", "/audit?before=0-0") == []


# -- in the browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000", "--lang=en"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _text_of(driver: Any, selector: str) -> str:
    """The text of the first element ``selector`` finds ("" while there is none yet)."""
    found = _css(driver, selector)
    return str(found[0].text) if found else ""


def _until(driver: Any, what: Callable[[], Any], timeout: float = 10) -> Any:
    """Poll ``what`` (a value or None/False) until it gives one; the page's own refresh
    runs every 3 s."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = what()
        except (StaleElementReferenceException, WebDriverException):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            driver.save_screenshot(str(SCREENSHOTS / "failure.png"))
            raise TimeoutError(f"the page never showed it; see {SCREENSHOTS / 'failure.png'}")
        time.sleep(0.05)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _click(driver: Any, selector: str) -> None:
    """Click the first element ``selector`` finds; again if a live page's refresh replaced
    it between finding and clicking (a stale element)."""

    def click() -> bool:
        found = _css(driver, selector)
        if not found:
            return False
        found[0].click()
        return True

    _until(driver, click)


def _listed(driver: Any) -> list[str]:
    return [row.get_attribute("data-id") for row in _css(driver, "#executions tr[data-id]")]


def _open(driver: Any, deployment: Deployment, eid: str) -> None:
    driver.get(f"{deployment.url}/ui/#/executions/{eid}")
    _until(driver, lambda: _css(driver, "#chain") and _css(driver, "#execution-id")[0].text == eid)


def _confirm(driver: Any) -> None:
    _click(driver, "#confirm-ok")
    _until(driver, lambda: not _css(driver, "#confirm[open]"))


def test_1_sign_in_and_filter_the_list(browser: Any, deployment: Deployment) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(f"{deployment.url}/ui/")
    _until(browser, lambda: _css(browser, "#login[open]"))  # the API asked for the token
    _css(browser, "#login-token")[0].send_keys(TOKEN)
    _css(browser, "#login-operator")[0].send_keys(OPERATOR)
    _click(browser, "#login-submit")
    _until(browser, lambda: len(_listed(browser)) == 6)
    assert set(_listed(browser)) == {"order-1", "order-1.child-0", "checkout-1", "approval-1",
                                     "queued-1", "queued-2"}
    assert browser.execute_script("return sessionStorage.getItem('zart-es.token')") == TOKEN
    assert OPERATOR in _css(browser, "#whoami")[0].text
    browser.save_screenshot(str(SCREENSHOTS / "executions.png"))
    Select(_css(browser, "#filter-status")[0]).select_by_value("failed")
    _until(browser, lambda: _listed(browser) == ["checkout-1"])
    Select(_css(browser, "#filter-status")[0]).select_by_value("")
    _css(browser, "#filter-prefix")[0].send_keys("order-")
    _until(browser, lambda: sorted(_listed(browser)) == ["order-1", "order-1.child-0"])
    Select(_css(browser, "#filter-name")[0]).select_by_value("console-invoice")
    _until(browser, lambda: _listed(browser) == ["order-1.child-0"])
    _css(browser, "#filter-prefix")[0].clear()
    Select(_css(browser, "#filter-name")[0]).select_by_value("")
    _until(browser, lambda: len(_listed(browser)) == 6)


def test_1b_an_unknown_execution_says_so(browser: Any, deployment: Deployment) -> None:
    browser.get(f"{deployment.url}/ui/#/executions/no-such-id")
    error = _until(browser, lambda: _css(browser, "#page-error"))[0]
    assert "no-such-id" in error.text


def test_2_an_execution_with_its_timeline(browser: Any, deployment: Deployment) -> None:
    browser.get(f"{deployment.url}/ui/#/executions")
    _click(browser, '#executions tr[data-id="order-1"] a')
    _until(browser, lambda: _css(browser, "#chain"))
    assert _css(browser, "#execution-id")[0].text == "order-1"
    assert "hash chain verified" in _css(browser, "#chain")[0].text
    assert "keyed" in _css(browser, "#chain")[0].text  # the deployment has an audit key
    assert '"invoice": "invoice-o1"' in _css(browser, "#result pre")[0].text
    assert _css(browser, "#input pre")[0].text == '"o1"'
    rows = [g.get_attribute("data-row") for g in _css(browser, "#timeline g.row")]
    assert rows == ["execution", "reserve", "charge", "sleep-0", "event:approval#0",
                    "child:order-1.child-0", "ship"]
    charge = _css(browser, '#timeline g.row[data-row="charge"] rect')
    assert [r.get_attribute("class") for r in charge] == ["span attempt retry",
                                                          "span backoff fired",
                                                          "span attempt completed"]
    xs = [float(r.get_attribute("x")) for r in charge]
    assert xs == sorted(xs)  # to scale: the retry, its backoff, the second attempt
    [sleep] = _css(browser, '#timeline g.row[data-row="sleep-0"] rect')
    [reserve] = _css(browser, '#timeline g.row[data-row="reserve"] rect')
    # 400 ms of sleep against a 50 ms step
    assert float(sleep.get_attribute("width")) > 4 * float(reserve.get_attribute("width"))
    assert len(_css(browser, "#events tbody tr")) == int(
        _css(browser, "#chain")[0].text.split(": ")[1].split()[0])
    assert _css(browser, '#actions [data-action="rerun"]')
    assert not _css(browser, '#actions [data-action="cancel"]')  # it has ended
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(SCREENSHOTS / "execution.png"))
    _click(browser, '#children a')  # to the child, and back by its parent link
    _until(browser, lambda: _css(browser, "#parent a"))
    assert _css(browser, "#execution-id")[0].text == "order-1.child-0"
    _click(browser, "#parent a")
    _until(browser, lambda: _css(browser, "#execution-id")
           and _css(browser, "#execution-id")[0].text == "order-1")


def test_3_cancel_with_a_confirmation(browser: Any, deployment: Deployment) -> None:
    _open(browser, deployment, "approval-1")
    _click(browser, '#actions [data-action="cancel"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _click(browser, "#confirm-cancel")  # "Back": nothing happens
    assert deployment.call("GET", "/executions/approval-1")["status"] == "waiting"
    _click(browser, '#actions [data-action="cancel"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    browser.save_screenshot(str(SCREENSHOTS / "cancel-confirm.png"))
    _confirm(browser)
    deployment.wait_status("approval-1", "cancelled")
    _until(browser, lambda: _css(browser, 'h1 .badge[data-status="cancelled"]'))
    assert not _css(browser, '#actions [data-action="cancel"]')
    browser.save_screenshot(str(SCREENSHOTS / "cancelled.png"))


def test_4_retry_step_of_a_failed_execution(browser: Any, deployment: Deployment) -> None:
    _open(browser, deployment, "checkout-1")
    assert "ConnectionError" in _css(browser, "#error pre")[0].text
    failed = _css(browser, '#timeline g.row[data-row="charge"] rect.failed')
    assert len(failed) == 1
    (deployment.flags / "provider-up").touch()  # the provider is back
    _click(browser, '#actions [data-action="retryStep"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _css(browser, '#confirm-fields input[name="reason"]')[0].send_keys("provider back")
    _confirm(browser)
    deployment.wait_status("checkout-1", "completed")
    _until(browser, lambda: _css(browser, 'h1 .badge[data-status="completed"]'), timeout=15)
    charge = _until(browser, lambda: len(_css(
        browser, '#timeline g.row[data-row="charge"] rect.attempt')) == 2 and _css(
        browser, '#timeline g.row[data-row="charge"] rect.attempt'))
    assert [r.get_attribute("class") for r in charge] == ["span attempt failed",
                                                          "span attempt completed"]
    repair = [e for e in deployment.history("checkout-1")
              if e["type"] == "StepRetryRequested"]
    assert [(e["step"], e["by"], e["reason"]) for e in repair] == [("charge", OPERATOR,
                                                                    "provider back")]
    browser.save_screenshot(str(SCREENSHOTS / "retried.png"))


def test_5_pause_rules_queues_schedules_and_the_audit_stream(
    browser: Any, deployment: Deployment
) -> None:
    from selenium.webdriver.support.ui import Select

    deployment.call("POST", "/schedules", json={"name": "nightly", "workflow": "console-order",
                                                "input": "n", "cron": "0 2 * * *"})
    browser.get(f"{deployment.url}/ui/#/pauses")
    _click(browser, "#add-pause")
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    Select(_css(browser, '#confirm-fields select[name="kind"]')[0]).select_by_value("workflow")
    _css(browser, '#confirm-fields input[name="name"]')[0].send_keys("console-order")
    _css(browser, '#confirm-fields input[name="reason"]')[0].send_keys("PSP down")
    _confirm(browser)
    _until(browser, lambda: _css(browser, 'tr[data-rule="workflow:console-order"]'))
    [rule] = deployment.call("GET", "/admin/pauses")
    assert (rule["rule"], rule["by"], rule["reason"]) == ("workflow:console-order", OPERATOR,
                                                          "PSP down")
    _click(browser, 'tr[data-rule="workflow:console-order"] button')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _confirm(browser)
    _until(browser, lambda: not _css(browser, "tr[data-rule]"))
    assert deployment.call("GET", "/admin/pauses") == []
    _click(browser, "#add-pause")  # Zart's scopes: a step glob
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    Select(_css(browser, '#confirm-fields select[name="kind"]')[0]).select_by_value("step")
    _css(browser, '#confirm-fields input[name="name"]')[0].send_keys("charge-*")
    _confirm(browser)
    _until(browser, lambda: _css(browser, 'tr[data-rule="step:charge-*"]'))
    _click(browser, 'tr[data-rule="step:charge-*"] button')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _confirm(browser)
    _until(browser, lambda: not _css(browser, "tr[data-rule]"))
    assert deployment.call("GET", "/admin/pauses") == []

    browser.get(f"{deployment.url}/ui/#/queues")
    row = _until(browser, lambda: _css(browser, 'tr[data-queue="console-slots"]'))[0]
    assert "queued-1" in row.text
    assert "queued-2" in row.text
    browser.save_screenshot(str(SCREENSHOTS / "queues.png"))

    browser.get(f"{deployment.url}/ui/#/schedules")
    row = _until(browser, lambda: _css(browser, 'tr[data-schedule="nightly"]'))[0]
    assert "0 2 * * *" in row.text
    _click(browser, 'tr[data-schedule="nightly"] button')  # Pause
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _confirm(browser)
    _until(browser, lambda: _css(browser, 'tr[data-schedule="nightly"] .badge.paused'))
    assert deployment.call("GET", "/schedules/nightly")["paused"] is True

    browser.get(f"{deployment.url}/ui/#/audit")
    _until(browser, lambda: _css(browser, "tr[data-entry]"))
    entries = [r.text for r in _css(browser, "tr[data-entry]")]
    assert "schedule.pause" in entries[0]
    assert any("pause" in e and OPERATOR in e and "workflow:console-order" in e
               for e in entries)
    browser.save_screenshot(str(SCREENSHOTS / "audit.png"))


def test_6_rerun_from_a_step_and_send_a_signal(browser: Any, deployment: Deployment) -> None:
    from selenium.webdriver.support.ui import Select

    _open(browser, deployment, "order-1")
    _click(browser, '#actions [data-action="rerun"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    Select(_css(browser, '#confirm-fields select[name="step"]')[0]).select_by_value("ship")
    _confirm(browser)
    rerun = _until(browser, lambda: [e for e in deployment.history("order-1")
                                     if e["type"] == "StepsInvalidated"])
    assert [(e["steps"], e["forgotten"], e["by"]) for e in rerun] == [(["ship"], ["ship"],
                                                                       OPERATOR)]
    deployment.wait_status("order-1", "completed")
    ship = _until(browser, lambda: len(_css(
        browser, '#timeline g.row[data-row="ship"] rect.attempt')) == 2)
    assert ship

    _open(browser, deployment, "queued-1")  # holds the queue's slot, waits for "go"
    _click(browser, '#actions [data-action="signal"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _css(browser, '#confirm-fields input[name="name"]')[0].send_keys("go")
    payload = _css(browser, '#confirm-fields textarea[name="payload"]')[0]
    payload.clear()
    payload.send_keys('{"by": "console"}')
    _confirm(browser)
    deployment.wait_status("queued-1", "completed")
    assert deployment.call("GET", "/executions/queued-1")["result"] == "{'by': 'console'}"
    deployment.wait_status("queued-2", "waiting")  # the freed slot went to the next in line
    _until(browser, lambda: _css(browser, 'h1 .badge[data-status="completed"]'))


def test_7_the_list_pages_with_the_apis_cursor_and_filters_by_time(
    browser: Any, deployment: Deployment
) -> None:
    for i in range(52):
        deployment.call("POST", "/executions",
                        json={"name": "console-invoice", "input": f"p{i}", "id": f"page-{i:02d}"})
    browser.get(f"{deployment.url}/ui/#/executions")
    _click(browser, "#nav a[data-page=pauses]")  # leave and come back: the list reloads
    _click(browser, "#nav a[data-page=executions]")
    _until(browser, lambda: len(_listed(browser)) == 50)
    first = _listed(browser)
    assert first[:2] == ["page-51", "page-50"]  # newest first
    _click(browser, "#next-page")
    _until(browser, lambda: _listed(browser) and _listed(browser)[0] != first[0])
    second = _listed(browser)
    assert not set(first) & set(second)
    assert len(first) + len(second) == 52 + 6  # and the executions of the tests before
    _click(browser, ".pager button")  # "Newer": back to the first page
    _until(browser, lambda: _listed(browser) == first)
    # a start-time range in the future holds nothing; one in the past holds everything
    set_filter = ("const input = document.querySelector(arguments[0]);"
                  "input.value = arguments[1];"
                  "input.dispatchEvent(new Event('change'));")
    browser.execute_script(set_filter, "#filter-after", "2999-01-01T00:00:00")
    _until(browser, lambda: not _listed(browser) and _css(browser, "#executions td.muted"))
    browser.execute_script(set_filter, "#filter-after", "2000-01-01T00:00:00")
    _until(browser, lambda: len(_listed(browser)) == 50)


def test_8_select_rows_and_act_on_them_in_bulk(browser: Any, deployment: Deployment) -> None:
    from selenium.webdriver.support.ui import Select

    ids = [f"bulk-{i}" for i in range(3)]
    for eid in ids:
        deployment.call("POST", "/executions",
                        json={"name": "console-approval", "input": eid, "id": eid})
    for eid in ids:
        deployment.wait_status(eid, "waiting")
    browser.get(f"{deployment.url}/ui/#/executions")
    _css(browser, "#filter-prefix")[0].send_keys("bulk-")
    _until(browser, lambda: sorted(_listed(browser)) == ids)
    _click(browser, "#select-all")
    _until(browser, lambda: "3 selected" in _text_of(browser, "#bulk-act"))
    _click(browser, "#bulk-act")
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    assert "3 selected execution(s)" in _css(browser, "#confirm-text")[0].text
    Select(_css(browser, '#confirm-fields select[name="action"]')[0]).select_by_value("cancel")
    _css(browser, '#confirm-fields input[name="reason"]')[0].send_keys("bulk test")
    browser.save_screenshot(str(SCREENSHOTS / "bulk.png"))
    _confirm(browser)
    for eid in ids:
        deployment.wait_status(eid, "cancelled")
        cancels = [e for e in deployment.history(eid) if e["type"] == "CancelRequested"]
        assert [(c["by"], c["reason"]) for c in cancels] == [(OPERATOR, "bulk test")]
    _until(browser, lambda: "cancel: 3 done" in _text_of(browser, "#toast"))


def test_9_ask_a_query_and_send_an_update(browser: Any, deployment: Deployment) -> None:
    deployment.call("POST", "/executions", json={"name": "console-desk", "id": "desk-1"})
    deployment.wait_status("desk-1", "waiting")
    _open(browser, deployment, "desk-1")
    _click(browser, '#actions [data-action="query"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _css(browser, '#confirm-fields input[name="name"]')[0].send_keys("asked")
    _confirm(browser)
    _until(browser, lambda: _text_of(browser, "#query-result").strip() == "[]")
    _click(browser, '#actions [data-action="update"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    _css(browser, '#confirm-fields input[name="name"]')[0].send_keys("ask")
    payload = _css(browser, '#confirm-fields textarea[name="payload"]')[0]
    payload.clear()
    payload.send_keys('"why?"')
    _confirm(browser)
    _until(browser, lambda: 'answered: "answer to why?"' in _text_of(browser, "#toast"))
    _click(browser, "#query-refresh")
    _until(browser, lambda: '"why?"' in _text_of(browser, "#query-result"))
    browser.save_screenshot(str(SCREENSHOTS / "query-update.png"))
    _click(browser, '#actions [data-action="query"]')
    _until(browser, lambda: _css(browser, "#confirm[open]"))
    name = _css(browser, '#confirm-fields input[name="name"]')[0]
    name.clear()
    name.send_keys("nope")
    _click(browser, "#confirm-ok")
    error = _until(browser, lambda: _css(browser, "#confirm-error:not([hidden])"))[0]
    assert "registered: 'asked'" in error.text
    _click(browser, "#confirm-cancel")
