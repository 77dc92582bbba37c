"""The web UI in headless Chromium (Debian's chromium and chromedriver, via Selenium)
against a real 3-node cluster: each page is rendered, its text checked against the
API's answers, and a screenshot of it checked for the page's own style.
"""

from __future__ import annotations

import io
import json
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster
from kmip.core import enums
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WINDOW = (1280, 900)
HEADER_BLUE = (0x1F, 0x3A, 0x5F)  # cluster/web/style.css


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("the UI tests need Debian's chromium and chromium-driver (.ci/run installs "
                    "them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                     # The nodes' certificates come from the test cluster's own CA.
                     "--ignore-certificate-errors"):
        options.add_argument(argument)
    running = webdriver.Chrome(options=options, service=Service(driver))
    yield running
    running.quit()


def call(cluster: Cluster, path: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> Any:
    node = next(iter(cluster.nodes.values()))
    request = urllib.request.Request(
        node.api + path, data=None if body is None else json.dumps(body).encode(),
        headers={"X-Keyquorum-Token": token or cluster.admin_token,
                 "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(cluster.ca))
    with urllib.request.urlopen(request, context=context, timeout=15) as response:
        return json.loads(response.read())


def open_page(browser: webdriver.Chrome, api: str, page: str) -> str:
    browser.get(f"{api}/ui#{page}")
    browser.execute_script("window.dispatchEvent(new HashChangeEvent('hashchange'))")
    WebDriverWait(browser, 20).until(lambda b: b.find_element(By.TAG_NAME, "body")
                                     .get_attribute("data-page") == page
                                     and b.find_element(By.TAG_NAME, "body")
                                     .get_attribute("data-ready") == "true")
    text: str = browser.find_element(By.ID, "page").text
    return text


def check_screenshot(browser: webdriver.Chrome, saved: Path) -> None:
    png = browser.get_screenshot_as_png()
    saved.write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] >= WINDOW[0] * 0.9
    # The style sheet loaded (the CSP let it): the header band is ours.
    assert image.getpixel((5, 5)) == HEADER_BLUE
    # A rendered table, not a blank page: many colours (text antialiasing, borders).
    colours = image.crop((0, 60, image.size[0], 400)).getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20


def use_token(browser: webdriver.Chrome, token: str | None) -> None:
    if token is None:
        browser.find_element(By.ID, "logout").click()
        return
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def test_cluster_and_seal_pages_need_no_token(cluster: Cluster, browser: webdriver.Chrome,
                                              tmp_path: Path) -> None:
    leader = cluster.leader()
    api = cluster.nodes[leader].api

    text = open_page(browser, api, "cluster")
    check_screenshot(browser, tmp_path / "cluster.png")
    assert f"Cluster, as node {leader} sees it" in text
    assert "role leader" in text
    assert "quorum yes" in text and "seal unsealed" in text
    assert text.count(" follower connected ") == 2 and "unreachable" not in text

    text = open_page(browser, api, "seal")
    check_screenshot(browser, tmp_path / "seal.png")
    assert "state unsealed" in text

    # The pages behind a token say what to do instead of failing silently.
    text = open_page(browser, api, "tenancy")
    assert "Cannot show this page: 40" in text and "Enter an admin token" in text


def test_tenancy_replication_and_audit_with_a_token(cluster: Cluster, browser: webdriver.Chrome,
                                                   tmp_path: Path) -> None:
    api = next(iter(cluster.nodes.values())).api
    browser.get(f"{api}/ui#cluster")
    use_token(browser, cluster.admin_token)

    text = open_page(browser, api, "tenancy")
    check_screenshot(browser, tmp_path / "tenancy.png")
    # The dev cluster's tenant: scope default, role admin, the dev client credential.
    assert "Scope default" in text
    assert "admin operation_all 1 live, 0 revoked dev-client" in text

    text = open_page(browser, api, "replication")
    check_screenshot(browser, tmp_path / "replication.png")
    assert f"objects {call(cluster, '/v1/sys/replication/status')['objects']}" in text

    text = open_page(browser, api, "audit")
    check_screenshot(browser, tmp_path / "audit.png")
    assert "No audit device" in text

    with cluster.pykmip(next(iter(cluster.nodes))) as client:
        client.activate(client.create(enums.CryptographicAlgorithm.AES, 256))
        client.create(enums.CryptographicAlgorithm.AES, 128)
    text = open_page(browser, api, "objects")
    check_screenshot(browser, tmp_path / "objects.png")
    assert "default symmetric key active 1" in text
    assert "default symmetric key pre active 1" in text


def test_a_read_only_token_reads_but_the_ui_has_nothing_that_writes(
        cluster: Cluster, browser: webdriver.Chrome) -> None:
    api = next(iter(cluster.nodes.values())).api
    read_only = call(cluster, "/v1/auth/token/create", {"kind": "read-only"})["token"]
    browser.get(f"{api}/ui#cluster")
    use_token(browser, None)
    use_token(browser, read_only)

    assert "Scope default" in open_page(browser, api, "tenancy")
    # No form but the token's, no button but its two.
    assert len(browser.find_elements(By.TAG_NAME, "form")) == 1
    assert len(browser.find_elements(By.TAG_NAME, "button")) == 2
    use_token(browser, None)


def test_ui_headers_forbid_inline_script_and_framing(cluster: Cluster) -> None:
    node = next(iter(cluster.nodes.values()))
    context = ssl.create_default_context(cafile=str(cluster.ca))
    with urllib.request.urlopen(node.api + "/ui", context=context, timeout=10) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(node.api + "/ui/secrets.txt", context=context, timeout=10)
    assert missing.value.code == 404
    missing.value.close()


def test_objects_counts_only_the_scope_of_a_scoped_token(cluster: Cluster) -> None:
    with cluster.pykmip(next(iter(cluster.nodes))) as client:
        client.create(enums.CryptographicAlgorithm.AES, 256)
    call(cluster, "/v1/kmip/scope/elsewhere", {})
    scoped = call(cluster, "/v1/auth/token/create", {"kind": "scoped", "scope": "elsewhere"})

    everything = call(cluster, "/v1/sys/objects")["counts"]
    theirs = call(cluster, "/v1/sys/objects", token=scoped["token"])["counts"]

    assert any(c["scope"] == "default" and c["count"] >= 1 for c in everything)
    assert theirs == []


def test_audit_page_shows_the_latest_records_of_a_file_device(
        cluster: Cluster, browser: webdriver.Chrome) -> None:
    node_id = next(iter(cluster.nodes))
    api = cluster.nodes[node_id].api
    call(cluster, "/v1/sys/audit/trail-file", {"type": "file", "options": {"path": "ui.log"}})
    try:
        with cluster.pykmip(node_id) as client:
            client.create(enums.CryptographicAlgorithm.AES, 256, name="audited-from-ui-test")
        browser.get(f"{api}/ui#cluster")
        use_token(browser, None)
        use_token(browser, cluster.admin_token)

        text = open_page(browser, api, "audit")

        assert "trail-file file" in text and "Latest records of trail-file" in text
        assert "kmip_request" in text and "kmip_response" in text
        assert "operation=Create" in text or "operation=CREATE" in text, text[:2000]
    finally:
        node = cluster.nodes[node_id]
        request = urllib.request.Request(node.api + "/v1/sys/audit/trail-file", method="DELETE",
                                         headers={"X-Keyquorum-Token": cluster.admin_token})
        context = ssl.create_default_context(cafile=str(cluster.ca))
        urllib.request.urlopen(request, context=context, timeout=15).close()
