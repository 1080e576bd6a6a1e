"""The web dashboard in a real browser: Playwright driving Debian's chromium against a live
``openbatch serve --ui-actions`` running real jobs (azure-batch 15 and azure-storage-blob 12 make
them). Screenshots go to tests/artifacts/ (git-ignored). Every request the pages make must stay on
127.0.0.1.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers.pools import IMAGE
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
MANY = 230  # tasks of the paged job: five pages of 50

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run does)")


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-ui-"))
    srv = LiveServer(root / "data", extra_args=["--ui-actions"]).start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[BatchClient]:
    c = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    _pool(c, "work", 2, slots=2)
    _pool(c, "empty", 0)
    c.create_job(m.BatchJobCreateOptions(id="mixed", pool_info=m.BatchPoolInfo(pool_id="work")))
    c.create_tasks("mixed", [m.BatchTaskCreateOptions(
        id=f"m{i}", command_line=f"/bin/sh -c 'echo mixed {i}; exit {i % 3}'",
        environment_settings=[m.EnvironmentSetting(name="WHO", value=f"task-{i}")]) for i in range(9)])
    c.create_job(m.BatchJobCreateOptions(id="many", pool_info=m.BatchPoolInfo(pool_id="empty")))
    for start in range(0, MANY, 100):
        c.create_tasks("many", [m.BatchTaskCreateOptions(id=f"t{i:04d}", command_line="/bin/true")
                                for i in range(start, min(start + 100, MANY))])
    wait_for(lambda: c.get_job_task_counts("mixed").task_counts.completed == 9, "the mixed job to complete")
    yield c
    c.close()


@pytest.fixture(scope="module")
def blobs(server: LiveServer) -> BlobServiceClient:
    service = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)
    container = service.create_container("inputs", metadata={"project": "demo"})
    container.upload_blob("data/part-0001.csv", b"a,b\n1,2\n", metadata={"rows": "1"})
    container.upload_blob("data/part-0002.csv", b"a,b\n3,4\n")
    container.upload_blob("readme.txt", b"hello from the blob browser")
    return service


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, server: LiveServer, client: BatchClient, blobs: BlobServiceClient) -> Iterator[Page]:
    """A page whose every request is recorded; after the test none may have left this server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    own = f"http://127.0.0.1:{server.batch_port}/"
    assert seen, "the page made no requests"
    assert [u for u in seen if not u.startswith(own)] == []


def _pool(c: BatchClient, pool_id: str, nodes: int, slots: int = 1) -> None:
    c.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2_v3", target_dedicated_nodes=nodes,
                                           task_slots_per_node=slots, virtual_machine_configuration=IMAGE,
                                           start_task=m.BatchStartTask(command_line="/bin/sh -c 'echo ready'",
                                                                       wait_for_success=True)))


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def _mark(page: Page) -> None:
    """A value that lives only as long as this document: still there later means no reload."""
    page.evaluate("window.__notReloaded = true")


def _not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def test_root_redirects_to_the_overview(page: Page, server: LiveServer) -> None:
    page.goto(server.batch_url + "/")
    assert page.url == f"{server.batch_url}/ui/{server.account}/"
    expect(page.locator("h1")).to_have_text(f"Account {server.account}")
    expect(page.locator("#pools")).to_contain_text("work")
    expect(page.locator("#jobs")).to_contain_text("mixed")
    expect(page.locator("#containers")).to_contain_text("inputs")
    expect(page.locator("svg.chart")).to_have_count(1)
    _shot(page, "overview")


def test_job_counts_change_live(page: Page, server: LiveServer, client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="live", pool_info=m.BatchPoolInfo(pool_id="work")))
    client.create_tasks("live", [m.BatchTaskCreateOptions(id=f"l{i}", command_line="/bin/sh -c 'sleep 0.4'")
                                 for i in range(24)])
    page.goto(f"{server.batch_url}/ui/{server.account}/jobs/live")
    _mark(page)
    first = int(page.locator("#count-completed").inner_text())
    assert first < 24
    expect(page.locator("#count-completed")).not_to_have_text(str(first))  # changed without a reload
    expect(page.locator("#count-completed")).to_have_text("24", timeout=30_000)
    expect(page.locator("#progress-text")).to_contain_text("24 of 24 tasks completed")
    assert _not_reloaded(page)
    expect(page.locator("#task-table .task-row")).to_have_count(24)
    _shot(page, "job")


def test_task_stdout_is_followed_while_it_runs(page: Page, server: LiveServer, client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="follow", pool_info=m.BatchPoolInfo(pool_id="work")))
    script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done; echo finished >&2"
    client.create_task("follow", m.BatchTaskCreateOptions(id="talker", command_line=f"/bin/sh -c '{script}'"))
    wait_for(lambda: client.get_task("follow", "talker").state != m.BatchTaskState.ACTIVE, "the task to start")
    page.goto(f"{server.batch_url}/ui/{server.account}/jobs/follow/tasks/talker")
    _mark(page)
    expect(page.locator("#stdout")).to_contain_text("line 1")
    assert "line 6" not in page.locator("#stdout").inner_text()  # what shows came while it ran
    expect(page.locator("#stdout")).to_contain_text("line 6")
    expect(page.locator("#stderr")).to_contain_text("finished")
    expect(page.locator("#task-state")).to_contain_text("completed")
    assert page.locator("#stdout").inner_text().count("line 3") == 1  # appended once, not re-read
    assert _not_reloaded(page)
    expect(page.locator("#command-line")).to_contain_text("echo line")
    _shot(page, "task")


def test_failed_filter_and_exit_codes(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.batch_url}/ui/{server.account}/jobs/mixed")
    expect(page.locator("#task-table .task-row")).to_have_count(9)
    page.get_by_role("link", name="failed only").click()
    rows = page.locator("#task-table .task-row")
    expect(rows).to_have_count(6)  # exit 1 and exit 2: three each
    for text in rows.all_inner_texts():
        assert "failure" in text and "FailureExitCode" in text
    page.locator("select[name=state]").select_option("")
    page.locator("input[name=exit]").fill("2")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(3)
    assert sorted(r.split()[0] for r in rows.all_inner_texts()) == ["m2", "m5", "m8"]
    _shot(page, "failed")
    page.get_by_role("link", name="m2", exact=True).click()
    expect(page.locator("#failure-info")).to_contain_text("FailureExitCode")
    expect(page.locator("#environment")).to_contain_text("task-2")


def test_reactivate_a_failed_task(page: Page, server: LiveServer, client: BatchClient) -> None:
    def started() -> object:
        info = client.get_task("mixed", "m5").execution_info
        return info.start_time if info is not None else None

    before = started()
    page.goto(f"{server.batch_url}/ui/{server.account}/jobs/mixed/tasks/m5")
    page.get_by_role("button", name="Reactivate task").click()
    wait_for(lambda: started() not in (None, before), "the task to run again")


def test_paging_through_many_tasks(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.batch_url}/ui/{server.account}/jobs/many")
    seen: list[str] = []
    for _ in range(10):
        ids = [t.split()[0] for t in page.locator("#task-table .task-row").all_inner_texts()]
        seen += ids
        nxt = page.locator("#next-page")
        if nxt.count() == 0:
            break
        nxt.click()
        page.wait_for_url(re.compile(r"after=\d+"))
    assert len(seen) == len(set(seen)) == MANY  # every task once, across five pages
    assert sorted(seen) == [f"t{i:04d}" for i in range(MANY)]
    page.goto(f"{server.batch_url}/ui/{server.account}/jobs/many?state=running")
    expect(page.locator("#task-table")).to_contain_text("No tasks match this filter")


def test_pool_heat_map_and_resize(page: Page, server: LiveServer, client: BatchClient) -> None:
    page.goto(f"{server.batch_url}/ui/{server.account}/pools/work")
    cells = page.locator("#heat .cell")
    expect(cells).to_have_count(2)
    expect(page.locator("#nodes")).to_contain_text("completed")  # the start tasks
    expect(page.locator("#history tr")).not_to_have_count(1)
    _shot(page, "pool")
    _mark(page)
    page.goto(f"{server.batch_url}/ui/{server.account}/pools/empty")
    page.locator("input[name=target]").fill("1")
    page.get_by_role("button", name="Resize").click()
    expect(page.locator("#heat .cell")).to_have_count(1, timeout=20_000)  # the page updates itself
    assert client.get_pool("empty").target_dedicated_nodes == 1
    node = wait_for(lambda: next((n for n in client.list_nodes("empty") if n.state == m.BatchNodeState.IDLE), None),
                    "the new node to be idle")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Reboot").click()
    wait_for(lambda: client.get_node("empty", node.id).last_boot_time != node.last_boot_time, "the node to reboot")


def test_blob_browser(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.batch_url}/ui/{server.account}/blobs/")
    expect(page.locator("#containers")).to_contain_text("project=demo")
    page.get_by_role("link", name="inputs").click()
    expect(page.locator("#blobs .prefix")).to_have_count(1)
    expect(page.locator("#blobs .blob")).to_have_count(1)
    page.get_by_role("link", name="data/").click()
    expect(page.locator("#blobs .blob")).to_have_count(2)
    page.get_by_role("link", name="part-0001.csv").click()
    expect(page.locator("#metadata")).to_contain_text("rows")
    expect(page.locator("#properties")).to_contain_text("8 bytes")
    _shot(page, "blob")
    with page.expect_download() as info:
        page.locator("#download").click()
    path = info.value.path()
    assert Path(path).read_bytes() == b"a,b\n1,2\n"


def test_actions_terminate_a_job(page: Page, server: LiveServer, client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="stopme", pool_info=m.BatchPoolInfo(pool_id="empty")))
    page.goto(f"{server.batch_url}/ui/{server.account}/jobs/stopme")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Terminate job").click()
    wait_for(lambda: client.get_job("stopme").state == m.BatchJobState.COMPLETED, "the job to complete")
    # A POST from elsewhere (no Origin of this server) is refused.
    refused = httpx.post(f"{server.batch_url}/ui/{server.account}/jobs/mixed/delete",
                         headers={"origin": "http://evil.example"})
    assert refused.status_code == 403
    assert client.get_job("mixed").state == m.BatchJobState.ACTIVE


def test_the_rest_api_is_untouched(server: LiveServer) -> None:
    """Paths outside / and /ui/ are the Batch REST API's (unsigned: 403 as before)."""
    assert httpx.get(f"{server.batch_url}/pools").status_code == 403
    assert httpx.get(f"{server.batch_url}/ui/nobody/").status_code == 404


def test_read_only_by_default() -> None:
    """Without --ui-actions the dashboard changes nothing, even asked from its own origin."""
    root = Path(tempfile.mkdtemp(prefix="openbatch-ui-ro-"))
    srv = LiveServer(root / "data").start()
    try:
        c = BatchClient(srv.batch_url, AzureNamedKeyCredential(srv.account, srv.key))
        c.create_job(m.BatchJobCreateOptions(id="keep", pool_info=m.BatchPoolInfo(pool_id="nopool")))
        page = httpx.get(f"{srv.batch_url}/ui/{srv.account}/jobs/keep")
        assert page.status_code == 200 and "read-only" in page.text and "Terminate job" not in page.text
        refused = httpx.post(f"{srv.batch_url}/ui/{srv.account}/jobs/keep/terminate",
                             headers={"origin": srv.batch_url})
        assert refused.status_code == 403 and "--ui-actions" in refused.text
        assert c.get_job("keep").state == m.BatchJobState.ACTIVE
        c.close()
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
