"""An administrator's day in a real Chromium against gunicorn: publish a broken then a good
XLSForm, set up a phone from its QR code, export seminars in the background and download them."""
import io
import zipfile

import pytest

from collect import SEMINAR, instance_xml, post
from xlsforms import workbook

pytestmark = pytest.mark.browser

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BROKEN = [{"type": "text", "name": "village", "label": "Village"},
          {"type": "integer", "name": "households", "label": "Households", "relevant": "${vilage} != ''"}]
GOOD = [{"type": "text", "name": "village", "label": "Village"},
        {"type": "integer", "name": "households", "label": "Households", "relevant": "${village} != ''"}]


@pytest.fixture
def phones_sent(client, make_app_user):
    """Devices in the field, with seminars already synced from them."""
    tokens = {grantee: make_app_user(name=f"{grantee.title()} tablet 1", grantee=grantee)["token"]
              for grantee in ("chinek", "tomo")}
    make_app_user(name="Evaluator phone 1", evaluator=True)
    form = client.get(f"/v1/key/{tokens['chinek']}/projects/1/forms/seminar_attendance.xml").data
    for grantee, village in (("chinek", "Kant"), ("chinek", "Tokmok"), ("tomo", "Talas")):
        xml = instance_xml(form, {**SEMINAR, "grantee": grantee, "village": village})
        assert post(client, f"/v1/key/{tokens[grantee]}/projects/1/submission", xml).status_code == 201
    return tokens


def test_admin_publishes_a_form_sets_up_a_phone_and_downloads_an_export(browser_as, screenshot, phones_sent, tmp_path):
    page = browser_as("admin")

    # Forms: a broken workbook is explained and publishes nothing; the fixed one publishes.
    page.click("nav.mainnav >> text=Forms")
    page.wait_for_url("**/forms")
    page.set_input_files("input[name=workbook]", files=[{"name": "household_visit.xlsx", "mimeType": XLSX,
                         "buffer": workbook("household_visit", version="2026120101", title="Household visit",
                                            survey=BROKEN)}])
    page.click("[data-test=upload-submit]")
    error = page.locator("[data-test=upload-error]")
    error.wait_for()
    assert page.locator("[data-test=upload-error-where]").inner_text() == "Sheet “survey”, row 3"
    assert "Could not find the name 'vilage'" in page.locator("[data-test=upload-error-what]").inner_text()
    assert page.locator("tr[data-form=household_visit]").count() == 0
    screenshot(page, "form-upload-error")
    page.set_input_files("input[name=workbook]", files=[{"name": "household_visit.xlsx", "mimeType": XLSX,
                         "buffer": workbook("household_visit", version="2026120101", title="Household visit",
                                            survey=GOOD)}])
    page.click("[data-test=upload-submit]")
    page.wait_for_url("**/forms/household_visit")
    assert "Published Household visit version 2026120101." in page.locator(".flash-success").inner_text()
    page.click("text=← Forms")
    page.wait_for_url("**/forms")
    assert page.locator("tr[data-form=household_visit]").count() == 1
    screenshot(page, "forms")

    # Devices: a new tablet and its QR code, as an image the browser really decoded.
    page.click("nav.mainnav >> text=Devices")
    page.wait_for_url("**/devices")
    page.fill("input[name=name]", "Chinek tablet 2")
    page.select_option("select[name=owner]", "chinek")
    page.click("[data-test=device-create]")
    page.wait_for_url("**/devices/*")
    qr = page.locator("img[data-test=device-qr]")
    qr.wait_for()
    page.wait_for_function("document.querySelector('img[data-test=device-qr]').complete")
    assert qr.evaluate("img => img.naturalWidth") > 100
    assert "/v1/key/" in page.locator("[data-test=server-url]").inner_text()
    screenshot(page, "device-qr")
    page.click("text=← Devices")
    page.wait_for_url("**/devices")
    assert page.locator("tr[data-device='Chinek tablet 2']").count() == 1
    screenshot(page, "devices")

    # Exports: start one, watch the progress reach done, download the file.
    page.click("nav.mainnav >> text=Exports")
    page.wait_for_url("**/exports")
    form = page.locator("[data-test=export-submissions]")
    form.locator("select[name=form]").select_option("seminar_attendance")
    form.locator("select[name=format]").select_option("zip")
    form.locator("[data-test=export-start]").click()
    page.wait_for_url("**/exports#job-*")
    row = page.locator("tr[data-job]").first
    row.locator("[data-test=download]").wait_for(timeout=30_000)
    assert row.get_attribute("data-status") == "done"
    assert row.locator("[data-role=progress]").get_attribute("aria-valuenow") == "100"
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "exports")
    with page.expect_download() as info:
        row.locator("[data-test=download]").click()
    download = info.value
    assert download.suggested_filename.startswith("seminar_attendance-") and download.suggested_filename.endswith(".zip")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with zipfile.ZipFile(target) as archive:
        assert set(archive.namelist()) == {"seminar_attendance.csv", "seminar_attendance-participant.csv"}
        root = archive.read("seminar_attendance.csv").decode("utf-8")
    assert all(village in root for village in ("Kant", "Tokmok", "Talas"))
