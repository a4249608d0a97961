"""The latent explorer (``/generate``) in headless Chromium, decoding with the tiny generator of
``fixture_generator.py`` in the app's background process (helpers as in ``test_browser.py``;
every wait is on an element or a condition)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from test_browser import poll, wait_until_drawn

pytestmark = pytest.mark.browser

GRID_ROWS = ".generate-grid .ag-center-cols-container .ag-row"


@pytest.fixture(scope="module")
def vae_set(explorer_source):
    """The fixture's VAE set (material_id, formula …)."""
    from ml.service import explorer

    return explorer.vae_table()


def pick(page, dropdown: str, typed: str, option: str):
    """Type into a compound dropdown and choose the option whose label contains ``option``."""
    page.locator(f"#{dropdown}").click()
    page.locator(".dash-dropdown-search").fill(typed)  # one input event: typed keys race the options' update
    page.get_by_role("option", name=option).first.click()
    page.locator(f"#{dropdown}-value").get_by_text(option).wait_for()


def test_interpolation_between_two_searched_compounds(page, live_server, vae_set):
    first, second = vae_set.iloc[0], vae_set.iloc[-1]
    page.goto(f"{live_server}/generate")
    page.get_by_text("Latent explorer").first.wait_for()
    pick(page, "generate-a", first["formula"], first["material_id"])  # by formula
    pick(page, "generate-b", second["material_id"], second["material_id"])  # by id
    page.fill("#generate-steps", "5")
    page.get_by_role("button", name="Decode").click()
    page.get_by_text(f"5 steps from {first['material_id']} to {second['material_id']}").wait_for()
    assert poll(lambda: page.locator(GRID_ROWS).count() == 5, page=page), "the table has not 5 steps"
    page.wait_for_function("() => { const gd = document.querySelector('#generate-path-figure .js-plotly-plot');"
                           " return gd && gd._fullData && gd._fullData[0].x.length === 5; }")
    page.locator("#generate-step").get_by_text("step").first.wait_for()
    assert wait_until_drawn(page, ".structure-view__canvas", minimum=0.002), "the 3D structure stayed blank"
    page.locator(f"{GRID_ROWS}[row-id='3'] [col-id='formula']").click()  # a row of the table shows that step
    page.locator("#generate-step").get_by_text("step 4 (t = 0.75)").wait_for()


def test_targeted_generation_funnel_table_and_zip(page, live_server, vae_set):
    base = vae_set.iloc[0]["material_id"]
    page.goto(f"{live_server}/generate?around={base}")
    page.locator("#generate-n").wait_for()  # ?around= opens the "Generate around" tab
    page.locator("#generate-base-value").get_by_text(base).wait_for()
    page.fill("#generate-n", "20")
    page.get_by_role("button", name="Decode").click()
    page.get_by_text(f"20 samples around {base}").wait_for()
    generated = page.locator(".funnel__stage[data-stage=generated] .funnel__count")
    assert generated.inner_text() == "20"
    valid = int(page.locator(".funnel__stage[data-stage=valid] .funnel__count").inner_text())
    assert 0 <= valid <= 20
    page.locator(GRID_ROWS).first.wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download all CIFs (zip)").click()
    assert download.value.suggested_filename == f"around_{base}.zip"
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    rows = list(csv.DictReader(io.StringIO(archive.read(f"around_{base}/generated.csv").decode())))
    assert len(rows) == 20 and sum(r["valid"] == "True" for r in rows) == valid
    cifs = [name for name in archive.namelist() if name.endswith(".cif")]
    assert len(cifs) == sum(bool(r["formula"]) for r in rows)
    assert all(archive.read(name).decode().lstrip().startswith(("#", "data_")) for name in cifs)
