"""Layout in headless Chromium at a 1400-px window: what the eye must be able to read without
scrolling sideways, and scroll bars where a list scrolls (fixtures as in ``test_browser.py``;
every wait is on an element or a condition)."""

from __future__ import annotations

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS
from test_browser import open_map, poll

pytestmark = pytest.mark.browser

#: The longest formula of mp2024 (19 characters); the fixture map's are shorter.
LONGEST_FORMULA = "Sr40Fe18Co2Mo20O120"


def grid_layout(page, selector: str) -> dict:
    """Widths in a neighbour grid: the scrolling part, the visible columns, truncated texts."""
    return page.evaluate(
        """([selector, longest]) => {
            const grid = document.querySelector(selector);
            const viewport = grid.querySelector('.ag-center-cols-viewport');
            const cells = [...grid.querySelectorAll('.ag-cell, .ag-header-cell-text')];
            const formula = grid.querySelector('.ag-cell[col-id=formula]');
            const style = getComputedStyle(formula);
            const ctx = document.createElement('canvas').getContext('2d');
            ctx.font = style.font;
            const inner = formula.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return {
                scrollWidth: viewport.scrollWidth, clientWidth: viewport.clientWidth,
                columns: [...grid.querySelectorAll('.ag-header-cell')].map(h => h.getAttribute('col-id')),
                truncated: cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent),
                formulaRoom: inner - ctx.measureText(longest).width,
            };
        }""",
        [selector, LONGEST_FORMULA],
    )


def test_material_neighbours_fit_a_1400_px_window(page, live_server, atlas):
    assert page.viewport_size["width"] == 1400
    page.goto(f"{live_server}/material/mp-172")
    rows = page.locator(".grid-neighbors .ag-center-cols-container .ag-row")
    rows.first.wait_for()
    # under load the rows can be drawn before the last header cells: measure the finished grid
    page.locator(".grid-neighbors .neighbor-grid .ag-header-cell[col-id=crystal_system]").wait_for()
    layout = grid_layout(page, ".grid-neighbors .neighbor-grid")
    assert layout["scrollWidth"] <= layout["clientWidth"], layout  # no horizontal scrolling
    assert {"formula", "distance", "formation_energy_per_atom", "band_gap", "crystal_system"} <= set(layout["columns"])
    assert layout["truncated"] == [], layout  # every header and value readable
    assert layout["formulaRoom"] >= 0, layout  # and room for mp2024's longest formula

    # the other columns are one click away; the CSV has them all whatever the grid shows
    page.get_by_text("Columns").click()
    page.get_by_label("ρ (g/cm³)").check()
    page.locator(".grid-neighbors .ag-header-cell[col-id=density]").wait_for()
    page.get_by_label("SuperCon").uncheck()
    page.locator(".grid-neighbors .ag-header-cell[col-id=supercon_label]").wait_for(state="detached")
    # a new neighbour count keeps the choice
    page.fill("#material-k", "3")
    page.press("#material-k", "Enter")
    assert poll(lambda: rows.count() == 3, page=page)
    columns = grid_layout(page, ".grid-neighbors .neighbor-grid")["columns"]
    assert "density" in columns and "supercon_label" not in columns


@pytest.fixture
def page_with_scrollbars(browser, live_server):
    """A page of a Chromium with overlay scroll bars, as on macOS and phones (drawn only while
    scrolling), and not hidden (Playwright's headless Chromium hides every scroll bar)."""
    with_bars = browser.browser_type.launch(executable_path=CHROMIUM, headless=True,
                                            args=[*CHROMIUM_ARGS, "--enable-features=OverlayScrollbar"],
                                            ignore_default_args=["--hide-scrollbars"])
    page = with_bars.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    yield page
    with_bars.close()


def test_search_matches_scroll_with_a_visible_scroll_bar(page_with_scrollbars, live_server, atlas):
    page = page_with_scrollbars
    formula = atlas.materials["formula"].value_counts().index[0]  # the fixture's most common formula
    open_map(page, live_server, f"?highlight={formula}")
    items = page.locator(".search-result .match-list li")
    items.first.wait_for()
    # as many matches as a common formula of mp2024 has (the fixture's have 3 at most)
    box = page.evaluate("""() => {
        const list = document.querySelector('.search-result .match-list');
        for (let i = 0; i < 40; i++) list.appendChild(list.firstElementChild.cloneNode(true));
        return {scroll: list.scrollHeight, client: list.clientHeight, bar: list.offsetWidth - list.clientWidth,
                bottom: list.getBoundingClientRect().bottom};
    }""")
    assert box["scroll"] > box["client"]  # the list scrolls …
    assert box["bar"] >= 8, box  # … with a scroll bar always drawn (an overlay one takes no room: 0)
    assert box["bottom"] < 900  # and the box ends on the screen
