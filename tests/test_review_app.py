"""The review app in a real headless Chromium (Debian's, driven by Playwright): sign in, worklist, the top flagged
image with its heatmap, a verdict that lands in the labels table; and nothing for anyone who has not signed in."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from helpers import REPOSITORY, SCREEN, free_port, run_screen, wait_until

pytestmark = pytest.mark.e2e
TOKEN = "a-long-enough-review-token-for-tests"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AXE = REPOSITORY / "screening" / "web" / "viewer" / "node_modules" / "axe-core" / "axe.min.js"


def serious_accessibility_violations(page) -> list[str]:  # noqa: ANN001
    """axe-core's serious and critical findings on the page as it is now (WCAG 2 A and AA rules)."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
            const found = await axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "best-practice"]});
            return found.violations.filter((v) => ["serious", "critical"].includes(v.impact))
                .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
        }"""
    )


@pytest.fixture
def review_app(screen_env, sample_folder, tmp_path):
    env = {**screen_env, "SCREEN_WEB_TOKEN": TOKEN, "SCREEN_WEB_PAGE_SIZE": "8"}
    run_screen(env, "enqueue", str(sample_folder))
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        SCREEN + ["serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY
    )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return requests.get(f"{base}/signin", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(answering, 60, 0.3, "review app up")
    yield base, env, tmp_path / "serve.log"
    server.terminate()
    server.wait(30)
    log.close()


def test_nothing_is_served_to_anyone_who_has_not_signed_in(review_app):
    base, _, log_path = review_app
    for page in ("/", "/models", "/models/1", "/images/1", "/images/1/heatmap.png", "/images/1/input.png"):
        answer = requests.get(base + page, allow_redirects=False, timeout=30)
        assert answer.status_code == 303 and answer.headers["location"] == "/signin", page
    for api in ("/api/worklist", "/api/models"):
        assert requests.get(base + api, timeout=30).status_code == 401
        bad = requests.get(base + api, headers={"Authorization": "Bearer not-the-token"}, timeout=30)
        assert bad.status_code == 401
    worklist = requests.get(base + "/api/worklist", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert worklist.status_code == 200 and worklist.json()["total"] == 11 and worklist.json()["rows"][0]["flagged"]
    wrong = requests.post(base + "/signin", data={"token": "guess"}, allow_redirects=False, timeout=30)
    assert wrong.headers["location"] == "/signin?failed=1" and "set-cookie" not in wrong.headers

    browser = requests.Session()
    for name in ("", " " * 8, "x" * 65, "Dr \u202eredaeR"):  # no name, too long, a right-to-left override
        unnamed = browser.post(base + "/signin", data={"token": TOKEN, "reader": name}, allow_redirects=False)
        assert unnamed.headers["location"] == "/signin?unnamed=1" and "set-cookie" not in unnamed.headers
    signed_in = browser.post(
        base + "/signin", data={"token": TOKEN, "reader": "Dr Ada Reader"}, allow_redirects=False, timeout=30
    )
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    forged = browser.post(base + "/images/1/verdict", data={"truth": "normal", "csrf": "forged"}, timeout=30)
    assert forged.status_code == 403  # a post without the page's CSRF token: refused
    for page in ("/signin", "/", "/images/1", "/images/1/input.png"):
        headers = browser.get(base + page, timeout=60).headers
        assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store", page
    assert browser.get(base + "/images/99999999999999999999", timeout=30).status_code == 422  # not a server error
    versions = requests.get(base + "/api/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
    (active,) = [version["id"] for version in versions if version["status"] == "active"]
    assert f'href="/models/{active}"' in browser.get(base + "/models", timeout=30).text
    card = browser.get(f"{base}/models/{active}", timeout=30).text  # its model card, from its artifact
    for section in ("Operating points per population", "Applicability gate", "Consistency", "adult/NIH ChestX-ray14"):
        assert section in card
    assert "<table>" in card and "<script" not in card
    assert browser.get(base + "/models/999", timeout=30).status_code == 404
    no_csrf = browser.post(base + "/images/1/verdict", data={"truth": "normal"}, timeout=30)
    assert no_csrf.status_code == 403  # as a forged one: refused, not a validation error

    for _ in range(5):  # with the three wrong tokens above, more than five in a minute
        requests.post(base + "/signin", data={"token": "guess-again"}, allow_redirects=False, timeout=30)
    right = requests.post(base + "/signin", data={"token": TOKEN, "reader": "A"}, allow_redirects=False, timeout=30)
    assert right.status_code == 429 and right.headers["retry-after"] == "60"  # this address, for the minute
    logged = log_path.read_text()
    assert "a sign-in with a wrong token from 127.0.0.1" in logged and "guess" not in logged


def test_a_radiologist_signs_in_opens_the_top_flagged_image_and_records_a_verdict(review_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, env, server_log = review_app
    assert CHROMIUM, "Debian's chromium is missing: `make test-tools` installs it"
    shots = Path(os.environ.get("SCREEN_TEST_SCREENSHOTS") or tmp_path)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/")
        assert page.url == base + "/signin"
        assert serious_accessibility_violations(page) == []
        page.fill("#reader", "Dr Ada Reader")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        expect(page).to_have_url(base + "/")
        rows = page.locator("#images tbody tr")
        expect(rows).to_have_count(8)  # a page of 8 (SCREEN_WEB_PAGE_SIZE), once the worklist has loaded
        expect(rows.first).to_contain_text("FLAG")
        probabilities = [
            float(text) for text in page.locator("#images tbody tr.flagged td:nth-child(3)").all_inner_texts()
        ]
        assert probabilities == sorted(probabilities, reverse=True)  # flagged first, highest first
        page.screenshot(path=str(shots / "worklist.png"), full_page=True)
        assert serious_accessibility_violations(page) == []
        page.click("form.filters button[type=submit]")  # every field left empty: the whole worklist, no 422
        expect(page.locator("#counts")).to_have_text("Images 1 to 8 of 11 (page 1 of 2).")
        expect(rows).to_have_count(8)
        page.click("#next-page")  # past the first page: the rest, unscored last
        expect(page.locator("#counts")).to_have_text("Images 9 to 11 of 11 (page 2 of 2).")
        expect(rows).to_have_count(3)
        page.click("#quick-unscored")
        page.wait_for_url(base + "/?view=not-scored")  # and its load
        statuses = page.locator("#images tbody td:nth-child(2)").all_inner_texts()
        assert statuses and set(statuses) <= {"skipped", "failed"} and rows.count() < 8
        page.goto(base + "/")

        heatmaps = Path(env["SCREEN_DATA_DIR"]) / "heatmaps"

        def made_ahead() -> bool:  # by the app's own thread: no heatmap has been asked for yet
            return heatmaps.is_dir() and len(list(heatmaps.glob("*.png"))) == len(probabilities)

        wait_until(made_ahead, 240, 0.5, "the heatmaps of every flagged image made before anyone opens one")
        top_name = rows.first.locator("a").inner_text()
        rows.first.locator("a").click()
        page.wait_for_function("document.querySelector('#heatmap').naturalWidth > 0", timeout=120_000)
        assert page.locator("#heatmap-pending").is_hidden()  # the placeholder goes once the heatmap is there
        item = "filmViewer.world.getItemAt(0)"
        page.wait_for_function(f"window.filmViewer && {item} && {item}.getFullyLoaded()", timeout=60_000)
        assert page.evaluate("filmViewer.world.getItemAt(0).source.dimensions.x") >= 1000  # its own resolution
        page.wait_for_function("document.querySelector('#evidence-layer').naturalWidth > 0", timeout=30_000)
        page.screenshot(path=str(shots / "image.png"))  # what a reader sees first, at 1280 x 800 and 1920 x 1080
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.screenshot(path=str(shots / "image-1920.png"))
        page.set_viewport_size({"width": 1280, "height": 800})
        assert page.locator("button[value=pneumonia]").is_visible() and page.locator("#film-viewer").is_visible()
        assert serious_accessibility_violations(page) == []
        home = page.evaluate("filmViewer.viewport.getZoom()")
        for _ in range(3):
            page.keyboard.press("+")
        assert page.evaluate("filmViewer.viewport.getZoom()") > 1.5 * home
        box = page.locator("#film-viewer").bounding_box()
        middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.move(*middle)
        page.mouse.down(button="right")  # a window: wider (right) and brighter (up)
        page.mouse.move(middle[0] + 120, middle[1] - 60, steps=5)
        page.mouse.up(button="right")

        def window() -> tuple[float, float]:
            curve = page.locator("#window-level feFuncR")
            return float(curve.get_attribute("slope")), float(curve.get_attribute("intercept"))

        slope, intercept = window()
        assert 0 < slope < 1 and intercept != 0
        page.keyboard.press("i")
        assert window()[0] == pytest.approx(-slope, abs=1e-3)
        assert page.locator("#evidence-layer").is_visible()  # a flagged film: its heatmap layer is on
        page.keyboard.press("h")
        assert page.locator("#evidence-layer").is_hidden()
        page.keyboard.press("0")
        assert window() == (1.0, 0.0)
        page.wait_for_function(f"Math.abs(filmViewer.viewport.getZoom() - {home}) < 1e-3 * {home}", timeout=10_000)
        assert page.locator("#probability").inner_text() == f"{probabilities[0]:.3f}"
        page.keyboard.press("p")  # a reading by keyboard alone: the next flagged image without one opens
        page.wait_for_selector("#recorded")
        assert f"Reading recorded for {top_name}: pneumonia." in page.locator("#recorded").inner_text()
        assert page.locator("#probability").inner_text() == f"{probabilities[1]:.3f}"
        second = page.url.split("/images/")[1].split("?")[0]
        page.keyboard.press("n")  # the second image: normal
        page.wait_for_url(lambda url: f"recorded={second}" in url)
        assert page.locator("#verdict").inner_text() == "not read yet"
        page.keyboard.press("w")  # back to the worklist, and to the first image again
        page.wait_for_url(base + "/")
        rows.first.locator("a").click()
        page.click("button[value=normal]")  # a second reading of the first image, with the mouse
        page.locator("#recorded a").click()
        expect(page.locator("#verdict")).to_have_text("normal")
        first = page.url
        page.keyboard.press("l")  # the next image in the worklist, and back
        page.wait_for_url(lambda url: url != first)
        page.keyboard.press("k")
        page.wait_for_url(first)
        history = page.locator("#history tbody tr").all_inner_texts()
        assert [line.split("\t")[1:] for line in history] == [
            ["normal", "Dr Ada Reader"],
            ["pneumonia", "Dr Ada Reader"],
        ]
        chromium.close()

    engine = sa.create_engine(f"sqlite:///{Path(env['SCREEN_DATA_DIR']) / 'screening.db'}")
    with engine.connect() as connection:
        labels = connection.execute(
            sa.text("SELECT r.path, l.pneumonia, l.source FROM labels l JOIN results r ON r.sha256 = l.sha256")
        ).all()
    engine.dispose()
    assert (top_name, False, "review page") in [
        (Path(path).name, bool(pneumonia), source) for path, pneumonia, source in labels
    ] and len(labels) == 2
    assert top_name not in server_log.read_text()  # the server logs ids, never file names
