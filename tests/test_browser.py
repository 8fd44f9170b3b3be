"""A real JupyterLab in a real browser: what a learner sees when they press "Run All".

JupyterLab runs on 127.0.0.1 with its own temporary configuration, its Python kernels forked from a
process that imported torch, as the rest of the test run's are (tests/lab_server.py); Debian's
Chromium runs headless, driven by Playwright (the PyPI package, pointed at ``/usr/bin/chromium``: no
browser is downloaded).
Lessons are copied, without their outputs, into a temporary folder, so the repository is never
touched, and open one after another in one browser tab, as a learner goes from lesson to lesson.
Screenshots go to ``artifacts/browser/`` (``AIGC_ARTIFACTS`` moves it).

On a developer machine without Chromium or Playwright these tests skip; under ``CI=true`` they fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import nbformat
import pytest

from aigc_course.notebook_tools import notebook_text
from tests import kernels
from tests.helpers import CHROMIUM, ROOT, printed_text, require

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Settings for this server only: every cell rendered (no windowing, so the DOM holds the whole
# notebook), no news or update checks (there is no internet), no autosave surprises.
LAB_SETTINGS = {
    # autoStartDefaultKernel: a notebook opened while other notebooks' kernels run starts its own
    # (seen once on a fast machine: the "Select Kernel" dialog, left open, took every click).
    # kernelShutdown: closing a lesson's tab leaves its kernel running (the `lab` fixture checks,
    # at the end, that the lessons' kernels were forked from the run's kernel parent).
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
        "kernelShutdown": False,
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}
RUN_ALL_TIMEOUT_MS = 300_000
ACTIVE = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the current tab
PROMPTS = f"[...document.querySelectorAll('{ACTIVE} .jp-CodeCell .jp-InputArea-prompt')]"
# Run All has started once a prompt shows [*] or a count; it is done when every one shows a count.
STARTED = f"() => {PROMPTS}.some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
FINISHED = f"""() => {{ const prompts = {PROMPTS};
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)); }}"""


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("AIGC_ARTIFACTS", ROOT / "artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({process.returncode}):\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(
        f"JupyterLab did not listen on port {port} in {seconds} s:\n{log.read_text()}"
    )


def parent_of(pid: int) -> int | None:
    """The parent process of ``pid``, or None if it has ended (Linux's /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE).group(1))


def copy_without_outputs(source: Path, target: Path) -> None:
    notebook = nbformat.read(source, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    target.write_text(notebook_text(notebook), encoding="utf-8")


@pytest.fixture(scope="module")
def playwright_api():
    require(
        CHROMIUM.is_file(), f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed (pip install playwright)")
    with sync_playwright() as api:
        yield api


@pytest.fixture(scope="module")
def lab(tmp_path_factory, playwright_api):
    """A JupyterLab server on 127.0.0.1 serving a temporary folder; yields (base_url, folder).
    Its kernels talk over Unix sockets in its runtime folder, as the rest of the test run's do
    (tests/kernels.py): over TCP another process can take a kernel's port between the server's
    pick and the kernel's bind, and such a kernel never answers. A short folder of its own: a
    socket's path must fit in about 100 characters."""
    home = tmp_path_factory.mktemp("jupyter")
    runtime_dir = tempfile.mkdtemp(prefix="aigc-lab-")
    root = tmp_path_factory.mktemp("lessons")
    settings_dir = home / "config" / "lab" / "user-settings"
    for name, values in LAB_SETTINGS.items():
        plugin, file_name = name.rsplit("/", 1)
        (settings_dir / plugin).mkdir(parents=True, exist_ok=True)
        (settings_dir / plugin / file_name).write_text(json.dumps(values))
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=runtime_dir,
        JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    env.pop("MPLBACKEND", None)  # the test run's Agg would hide every plot: lessons use inline
    port = free_port()
    log = home / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "tests.lab_server",  # JupyterLab, its kernels forked as the test run's are
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--allow-root",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        "--KernelManager.transport=ipc",
    ]
    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, server, log)
        yield f"http://127.0.0.1:{port}", root
        transports = [
            json.loads(path.read_text())["transport"]
            for path in Path(runtime_dir).glob("kernel-*.json")
        ]
        assert transports and set(transports) == {"ipc"}, f"the lessons' kernels: {transports}"
        if kernels.FORKS:  # and they were forked, not started as new processes, by the run's parent
            forked = re.findall(rf"{kernels.FORKED}: pid (\d+)", log.read_text())
            assert forked, "no kernel forked (tests/lab_server.py)"
            parents = {parent_of(int(pid)) for pid in forked} - {None}  # the lessons' still run
            assert parents == {kernels.kernel_parent().pid}, "not the run's kernel parent"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.copy(log, artifacts_dir() / "jupyterlab.log")
        shutil.rmtree(runtime_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser_tab(playwright_api):
    """One Chromium tab for the module, as a learner keeps one: JupyterLab loads once and the
    lessons open in it one after another (File → Open from Path…). Loading JupyterLab costs
    Chromium more CPU than opening a lesson in it, and a browser's start costs more again."""
    browser = playwright_api.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()
    browser.close()


@pytest.fixture
def page(browser_tab, request):
    """The module's tab, for one test; afterwards the test's lesson is closed (its kernel runs on,
    as when a learner closes a tab), or, if the page is not in a state to close it, the next test
    loads JupyterLab afresh."""
    yield browser_tab
    try:
        # The page as the test left it (the one to look at when a test fails).
        browser_tab.screenshot(path=str(artifacts_dir() / f"{request.node.name}-last.png"))
        (artifacts_dir() / f"{request.node.name}-last.html").write_text(browser_tab.content())
    finally:
        close_the_lesson(browser_tab)


def close_the_lesson(page) -> None:
    """File → Close Tab on the current notebook, discarding what a failed test left unsaved. If
    that fails (a dialog left open by a failed test, say), a blank page, so that the next lesson
    loads JupyterLab again: slower, so it warns."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.keyboard.press("Escape")
        click_menu_item(page, "File", "Close Tab", timeout=10_000)
        page.wait_for_function(
            f"() => !document.querySelector('{ACTIVE}') || !!document.querySelector('.jp-Dialog')",
            timeout=10_000,
        )
        if page.locator(".jp-Dialog").count():  # "Save your work?": a test failed before saving
            page.locator(".jp-Dialog button", has_text="Discard").click(timeout=10_000)
        page.wait_for_selector(ACTIVE, state="detached", timeout=10_000)
    except PlaywrightError as error:
        warnings.warn(
            f"the lesson's tab did not close ({str(error).splitlines()[0]}): the next lesson "
            "loads JupyterLab again",
            stacklevel=1,
        )
        page.once("dialog", lambda dialog: dialog.accept())  # JupyterLab's "leave the page?"
        page.goto("about:blank")


def click_menu_item(page, menu: str, item: str, timeout: float | None = None) -> None:
    """Open ``menu`` in JupyterLab's menu bar and choose the item labelled ``item`` exactly (not
    "Restart Kernel and Run All Cells…" for "Run All Cells")."""

    def exactly(text: str) -> re.Pattern:
        return re.compile(f"^{re.escape(text)}$")

    menus = page.locator(".lm-MenuBar-itemLabel")
    menus.filter(has_text=exactly(menu)).first.click(timeout=timeout)
    labels = page.locator(".lm-Menu-item:visible:not(.lm-mod-disabled) .lm-Menu-itemLabel")
    labels.filter(has_text=exactly(item)).first.click(timeout=timeout)


def open_lesson(page, base_url: str, lesson: str) -> None:
    """Open ``lesson`` in the tab's JupyterLab with File → Open from Path…, or, when the tab holds
    no JupyterLab, load JupyterLab with the lesson (``?reset``: no tabs restored from before)."""
    if not page.url.startswith(f"{base_url}/lab"):
        page.goto(f"{base_url}/lab/tree/{lesson}?reset")
        return
    click_menu_item(page, "File", "Open from Path…")
    path = page.locator(".jp-Dialog input")
    path.fill(lesson)
    path.press("Enter")


def wait_until_idle(page) -> None:
    """The kernel status in the notebook's toolbar says idle."""
    page.wait_for_selector(f"{ACTIVE} [data-status='idle']")


def wait_for_a_settled_kernel(base_url: str, lesson: str, seconds: float = 60) -> None:
    """The notebook's session has had the same kernel, idle, at two looks a second apart
    (JupyterLab's sessions API). JupyterLab can start a kernel for a notebook it opens and replace
    it with another half a second later: seen once in `.ci/run`, lesson 08's Run All went to the
    first, which ran the first cell and was shut down, and the other cells never ran."""
    deadline = time.monotonic() + seconds
    previous = None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base_url}/api/sessions", timeout=10) as answer:
            sessions = json.loads(answer.read())
        found = [session["kernel"] for session in sessions if session.get("path") == lesson]
        idle = len(found) == 1 and found[0].get("execution_state") == "idle"
        current = found[0]["id"] if idle else None
        if current is not None and current == previous:
            return
        previous = current
        time.sleep(1.0)
    raise AssertionError(f"{lesson}: no settled kernel in {seconds} s (sessions: {sessions})")


def run_all_cells(page, attempts: int = 3) -> None:
    """Run → Run All Cells, as a learner does; retried if the notebook did not start running
    (on a loaded machine the menu can open before the notebook is the current widget)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.locator(f"{ACTIVE} .jp-Cell").first.click()  # make the notebook the current widget
    for _ in range(attempts):
        click_menu_item(page, "Run", "Run All Cells")
        try:
            page.wait_for_function(STARTED, timeout=20_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"Run → Run All Cells did not start the notebook in {attempts} tries")


def open_and_run_all(page, lab, lesson: str) -> dict:
    """Open ``notebooks/<lesson>`` (a fresh copy without outputs), Run All, wait, save.

    Returns the notebook as saved by JupyterLab.
    """
    base_url, root = lab
    copy_without_outputs(ROOT / "notebooks" / lesson, root / lesson)
    open_lesson(page, base_url, lesson)
    notebook = page.locator(f"{ACTIVE} .jp-Notebook")
    notebook.wait_for()
    code_cells = notebook.locator(".jp-CodeCell")
    expected = sum(
        1 for cell in nbformat.read(root / lesson, as_version=4).cells if cell.cell_type == "code"
    )
    page.wait_for_function(
        f"n => document.querySelectorAll('{ACTIVE} .jp-CodeCell').length === n", arg=expected
    )
    # The kernel must be idle before Run All (the status shows in the notebook toolbar), and the
    # one the notebook keeps.
    wait_until_idle(page)
    wait_for_a_settled_kernel(base_url, lesson)
    run_all_cells(page)
    # Done when every code cell shows an execution count and the kernel is idle again. Looked at
    # four times a second: by default Playwright looks at every frame the page draws, for the
    # whole run (Chromium: 1.5 core-s less over the three lessons at 250 ms).
    page.wait_for_function(FINISHED, timeout=RUN_ALL_TIMEOUT_MS, polling=250)
    wait_until_idle(page)
    assert code_cells.count() == expected
    page.keyboard.press("Control+s")
    page.wait_for_function(
        f"() => !document.querySelector('{ACTIVE} .jp-mod-dirty')"
        " && !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')"
    )
    return nbformat.read(root / lesson, as_version=4)


def assert_ran_cleanly(page, saved) -> None:
    """Every code cell ran, in order, with no error output (in the file and on the page)."""
    code_cells = [cell for cell in saved.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), counts
    errors = [
        output for cell in code_cells for output in cell.outputs if output.output_type == "error"
    ]
    assert not errors, f"error outputs: {[e.ename + ': ' + e.evalue for e in errors]}"
    page_text = page.locator(f"{ACTIVE} .jp-Notebook").inner_text()
    for problem in ("Traceback (most recent call last)", "Error displaying widget"):
        assert problem not in page_text


#: What nbval leaves out when it compares outputs (its ``skip_compare``, images included).
NBVAL_UNCOMPARED = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}


def compared_outputs(cell: nbformat.NotebookNode) -> dict[str, list[str]]:
    """A code cell's outputs as nbval compares them: each stream's text (its pieces joined, as
    ``\r`` and ``\b`` leave it), then every kind of data but images and widget ids, in order."""
    from nbval.plugin import coalesce_streams

    compared: dict[str, list[str]] = {}
    for output in coalesce_streams(copy.deepcopy(cell.outputs)):
        if output.output_type == "stream":
            compared.setdefault(output.name, []).append(output.text)
        for kind, value in output.get("data", {}).items():
            if kind not in NBVAL_UNCOMPARED:
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                compared.setdefault(kind, []).append(text)
    return compared


def nbval_checks_output(cell: nbformat.NotebookNode) -> bool:
    """The cell carries nbval's ``NBVAL_CHECK_OUTPUT`` marker (a comment line or a tag)."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    markers = dict(find_comment_markers(cell.source)) | dict(find_metadata_tags(cell.metadata))
    return markers.get("check") is True


def assert_checked_outputs_as_committed(lesson: str, saved: nbformat.NotebookNode) -> None:
    """The cells marked ``NBVAL_CHECK_OUTPUT`` show what the committed lesson shows (nbval's check
    of them; it does not run the lessons these tests run, see conftest.py)."""
    committed = nbformat.read(ROOT / "notebooks" / lesson, as_version=4)
    pairs = [
        (ours, theirs)
        for ours, theirs in zip(saved.cells, committed.cells, strict=True)
        if theirs.cell_type == "code" and nbval_checks_output(theirs)
    ]
    for ours, theirs in pairs:
        assert compared_outputs(ours) == compared_outputs(theirs), theirs.source[:200]


def run_lesson(page, lab, request: pytest.FixtureRequest) -> nbformat.NotebookNode:
    """Run the lesson of the test's ``runs_lesson`` marker with Run All and check it as nbval
    would (conftest.py: nbval does not run it again); returns the notebook as saved."""
    lesson = request.node.get_closest_marker("runs_lesson").args[0]
    saved = open_and_run_all(page, lab, lesson)
    assert_ran_cleanly(page, saved)
    assert_checked_outputs_as_committed(lesson, saved)
    return saved


def plot_source(page, output) -> str:
    image = output.locator("img").first
    image.wait_for()
    return image.get_attribute("src")


@pytest.mark.runs_lesson("01_entropy_kl.ipynb")
def test_lesson_01_runs_and_the_kl_slider_redraws_the_plot(page, lab, request):
    run_lesson(page, lab, request)
    # The widget of the forward/reverse KL section: two sliders above the interact's plot.
    sliders = page.locator(".widget-interact").filter(has=page.locator(".widget-slider"))
    sliders.first.wait_for()
    interact = sliders.first
    assert interact.locator(".widget-slider").count() == 2
    plot = interact.locator(".widget-output")
    before = plot_source(page, plot)
    readout = interact.locator(".widget-slider", has_text="separation").locator(".widget-readout")
    interact.scroll_into_view_if_needed()
    handle = interact.locator(".widget-slider", has_text="separation").locator(".noUi-handle")
    handle.focus()
    page.keyboard.press("ArrowRight")  # one step: separation 4.00 -> 4.25, one redraw
    page.wait_for_function(
        "([el, old]) => { const img = el.querySelector('img'); return img && img.src !== old; }",
        arg=[plot.element_handle(), before],
        timeout=60_000,
    )
    assert readout.inner_text().strip() == "4.25"
    wait_until_idle(page)
    after = plot_source(page, plot)
    assert after != before and after.startswith("data:image/png")
    page.screenshot(path=str(artifacts_dir() / "lesson01_kl_slider.png"))
    interact.screenshot(path=str(artifacts_dir() / "lesson01_kl_widget.png"))


@pytest.mark.runs_lesson("08_gpt.ipynb")
def test_lesson_08_runs_with_the_pretrained_gpt_and_the_sampler_writes_text(page, lab, request):
    require(
        os.environ.get("AIGC_DATA_PATH") or (ROOT / "data").is_dir(),
        "Tiny Shakespeare is not reachable (set AIGC_DATA_PATH)",
    )
    saved = run_lesson(page, lab, request)
    loaded = printed_text(saved)
    assert "loaded the pretrained GPT" in loaded
    sampler = page.locator(".widget-vbox").filter(has=page.locator("button", has_text="generate"))
    sampler.first.scroll_into_view_if_needed()
    prompt = sampler.first.locator("input[type='text']").first
    prompt.fill("ROMEO:")
    prompt.press("Enter")
    sampler.first.locator("button", has_text="generate").click()
    output = sampler.first.locator(".widget-output")
    page.wait_for_function(
        "el => el.innerText.trim().length > 100", arg=output.element_handle(), timeout=120_000
    )
    text = output.inner_text()
    assert text.strip().startswith("ROMEO:"), text[:200]
    assert "cannot generate" not in text
    letters = sum(ch.isalpha() for ch in text)
    assert letters > 0.6 * len(text.replace("\n", "").replace(" ", "")), text[:300]
    page.screenshot(path=str(artifacts_dir() / "lesson08_gpt_sampler.png"))


IMAGE_DIGEST = """async (el) => {
    const img = el.querySelector('img');
    if (!img || !img.src) return null;
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
}"""


@pytest.mark.runs_lesson("04_self_attention.ipynb")
def test_lesson_04_explorer_survives_an_empty_and_a_quickly_replaced_sentence(page, lab, request):
    """Emptying the sentence shows one line (no traceback) under the last figure; two sentences
    entered in quick succession end with the figure of the second, byte for byte the one it gets
    when entered alone."""
    run_lesson(page, lab, request)
    explorer = page.locator(".widget-vbox").filter(
        has=page.locator(".widget-text", has_text="sentence")
    )
    explorer.first.scroll_into_view_if_needed()
    box = explorer.first.locator(".widget-text input")
    panel = explorer.first.element_handle()

    def enter(text: str) -> None:
        box.fill(text)
        box.press("Enter")

    def settled_digest(changed_from: str | None = None, quiet_ms: int = 1500) -> str:
        """The figure once it has changed from ``changed_from`` (when given) and then stayed the
        same, the kernel idle, for ``quiet_ms``: the toolbar can still say idle before the
        kernel has the new sentence, and a busy machine draws slowly (CI once read the figure
        too early with a fixed 300 ms wait)."""
        deadline = time.monotonic() + 60
        last = None
        while time.monotonic() < deadline:
            wait_until_idle(page)
            digest = page.evaluate(IMAGE_DIGEST, panel)
            if digest is not None and digest != changed_from and digest == last:
                return digest
            last = digest
            page.wait_for_timeout(quiet_ms)
        raise AssertionError(f"the figure did not settle in 60 s (last: {last})")

    original = settled_digest()
    assert original
    enter("")
    page.wait_for_function(
        "el => el.innerText.includes('cannot draw this')", arg=panel, timeout=60_000
    )
    text = explorer.first.inner_text()
    assert "the sentence has no words" in text and "Traceback" not in text
    assert settled_digest() == original, "the last good figure stays"
    enter("the dog ran")
    enter("a cat and a dog and a cat")  # straight after: two updates in flight
    fast = settled_digest(changed_from=original)
    enter("something else entirely")
    other = settled_digest(changed_from=fast)
    enter("a cat and a dog and a cat")
    alone = settled_digest(changed_from=other)
    assert fast == alone != original
    assert "cannot draw this" not in explorer.first.inner_text()
    explorer.first.screenshot(path=str(artifacts_dir() / "lesson04_explorer.png"))


def test_a_checked_cell_that_prints_otherwise_fails_as_under_nbval():
    """The browser tests' stand-in for nbval's output check: the committed lesson passes, and the
    same lesson with one checked cell printing one character more does not."""
    committed = nbformat.read(ROOT / "notebooks" / "01_entropy_kl.ipynb", as_version=4)
    assert_checked_outputs_as_committed("01_entropy_kl.ipynb", committed)
    checked = [
        cell for cell in committed.cells if nbval_checks_output(cell) and compared_outputs(cell)
    ]
    assert len([cell for cell in committed.cells if nbval_checks_output(cell)]) == 5
    assert checked
    stream = next(o for o in checked[-1].outputs if o.output_type == "stream")
    stream.text += "!"
    with pytest.raises(AssertionError):
        assert_checked_outputs_as_committed("01_entropy_kl.ipynb", committed)
