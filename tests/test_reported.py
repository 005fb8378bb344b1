"""Reported figures: the shipped file, validation on load, as-of queries, and compare()."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from geo import reported as R
from geo.errors import InputError, ReportedFiguresError
from geo.reported import ComputedValue


@pytest.fixture(scope="module")
def shipped() -> list[R.ReportedFigure]:
    return R.load_reported_figures()


# ---------------------------------------------------------------- the shipped file

def test_shipped_file_has_sourced_records_for_jiading_shanghai_and_other_cities(shipped):
    assert all(r.source.url.startswith(("https://", "http://")) and r.source.publisher for r in shipped)
    by_place = {p: [r for r in shipped if r.place == p] for p in R.places(shipped)}
    for place in ("Jiading", "Shanghai", "Beijing", "Wuhan", "Guangzhou", "Shenzhen", "Chongqing",
                  "Changsha", "Wuxi", "National"):
        assert by_place.get(place), f"no records for {place}"
    years = {r.as_of.year for r in by_place["Jiading"] if not r.is_target}
    assert {2018, 2020, 2021, 2022, 2023, 2024} <= years
    years = {r.as_of.year for r in by_place["Shanghai"] if not r.is_target}
    assert set(range(2018, 2026)) - {2021} <= years  # the reference has no 2021 citywide row


def test_jiading_end_feb_2024_figures(shipped):
    expect = {"area_km2": 463, "streets": 636, "test_road_km": 1117, "expressway_km": 41, "ref_km:G2": 19.5,
              "ref_km:G1503": 21.5, "vehicles": 638, "enterprises": 21, "test_mileage_km": 18_520_000,
              "share_of_city_mileage": 81}
    got = {f: R.latest_figure("Jiading", f, as_of="2024-03-01", figures=shipped) for f in expect}
    assert {f: r.value for f, r in got.items()} == expect
    for f in expect:
        if not f.startswith("ref_km:"):  # the 2024 article gives 41 km without the G2/G1503 split
            assert got[f].source.url == "https://shine.cn/biz/event/2403300087"
            assert got[f].as_of == date(2024, 2, 29) and got[f].as_of_label == "2024-02"
    assert got["ref_km:G2"].source.url == "https://shine.cn/news/metro/2305091458"


def test_earlier_as_of_picks_earlier_records(shipped):
    # 1,117 km first reported 2023-04-17; before that the latest total is 315 km (2021-08-30)
    assert R.latest_figure("Jiading", "test_road_km", "2023-04-16", figures=shipped).value == 315
    r = R.latest_figure("Jiading", "test_road_km", "2023-05-01", figures=shipped)
    assert (r.value, r.as_of, r.source.url) == (1117, date(2023, 4, 17), "https://shine.cn/news/metro/2304175966")
    assert R.latest_figure("Jiading", "area_km2", "2023-05-01", figures=shipped).value == 464  # end-2022 report
    assert R.latest_figure("Jiading", "enterprises", "2023-05-01", figures=shipped).value == 18
    v = R.latest_figure("Jiading", "vehicles", "2023-05-01", figures=shipped)
    assert (v.value, v.qualifier) == (200, "at_least")
    assert R.latest_figure("Jiading", "streets", "2023-05-01", figures=shipped) is None  # "several hundred"
    # a month-precision as_of means the end of that month
    assert R.latest_figure("Jiading", "streets", "2024-02-28", figures=shipped) is None
    assert R.latest_figure("Jiading", "streets", "2024-02", figures=shipped).value == 636


def test_targets_are_skipped_unless_asked(shipped):
    # the 2020-09-14 plan (1,300 km by 2022) is not an achieved figure
    assert R.latest_figure("Jiading", "test_road_km", "2020-10-01", figures=shipped).value == 53.6
    t = R.latest_figure("Jiading", "test_road_km", "2020-10-01", figures=shipped, include_targets=True)
    assert t.is_target and t.as_of == date(2020, 9, 14)


def test_history_is_sorted(shipped):
    h = R.history("Jiading", "test_road_km", figures=shipped)
    assert [r.as_of for r in h] == sorted(r.as_of for r in h)
    assert [r.value for r in h] == [5.6, 11.1, 53.6, 315, 315, 1117, 1117, 1117]
    allj = R.history("jiading", figures=shipped)  # case-insensitive place
    assert len(allj) > len(h) and [r.as_of for r in allj] == sorted(r.as_of for r in allj)


def test_reported_numbers_are_consistent_with_each_other(shipped):
    # the reference's own arithmetic: 18.52 M / 22.9 M km = 81 %; 1,117 / 1,800 km = 62 %
    jd = R.latest_figure("Jiading", "test_mileage_km", "2024-03-01", figures=shipped).value
    sh = R.latest_figure("Shanghai", "test_mileage_km", "2024-03-31", figures=shipped).value
    share = R.latest_figure("Jiading", "share_of_city_mileage", "2024-03-01", figures=shipped).value
    assert abs(100 * jd / sh - share) < 0.5
    km = R.latest_figure("Jiading", "test_road_km", "2023-05-09", figures=shipped).value
    city = R.latest_figure("Shanghai", "test_road_km", "2023-05-09", figures=shipped).value
    s62 = R.latest_figure("Jiading", "share_of_city_test_road_km", "2023-05-09", figures=shipped).value
    assert abs(100 * km / city - s62) < 0.5
    g = {f: R.latest_figure("Jiading", f, "2023-06-01", figures=shipped).value
         for f in ("ref_km:G2", "ref_km:G1503", "expressway_km")}
    assert g["ref_km:G2"] + g["ref_km:G1503"] == g["expressway_km"]


def test_source_km_definitions_follow_the_reference(shipped):
    def basis(place: str) -> set[str]:
        return {r.definition for r in shipped if r.place == place and r.figure == "test_road_km"}
    assert "one-way" in basis("Wuhan") and basis("Guangzhou/Huangpu") == {"one-way"}
    assert basis("Chongqing/Yongchuan") == {"two-way"}
    assert basis("Jiading") == {"not stated"} and basis("Shanghai") == {"not stated"}


def test_unknown_place_and_figure_are_input_errors(shipped):
    with pytest.raises(InputError, match="Jiading"):  # the hint suggests the close match
        R.figures_for("Jiadng", figures=shipped)
    with pytest.raises(InputError, match="unknown figure"):
        R.latest_figure("Jiading", "km", figures=shipped)
    with pytest.raises(InputError, match="as-of"):
        R.figures_for("Jiading", as_of="2024-13", figures=shipped)


# ---------------------------------------------------------------- validation on load

GOOD = '''
[sources.sd]
publisher = "Shanghai Daily"
url = "https://shine.cn/biz/event/2403300087"
published = 2024-03-30

[[figure]]
place = "Jiading"
figure = "test_road_km"
value = 1117
unit = "km"
as_of = "2024-02"
source = "sd"
'''


def _write(tmp_path: Path, extra: str, base: str = GOOD) -> Path:
    p = tmp_path / "figs.toml"
    p.write_text(base + extra, encoding="utf-8")
    return p


def test_small_file_loads(tmp_path):
    [r] = R.load_reported_figures(_write(tmp_path, ""))
    assert (r.value, r.as_of, r.as_of_precision, r.definition, r.qualifier) == (
        1117, date(2024, 2, 29), "month", "not stated", "exact")
    assert r.source.published == date(2024, 3, 30)


@pytest.mark.parametrize("extra, message", [
    ('[[figure]]\nplace = "Jiading"\nfigure = "test_km"\nvalue = 1\nunit = "km"\nas_of = "2024"\nsource = "sd"\n',
     "unknown figure 'test_km'"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "streets"\nvalue = 1\nunit = "count"\nas_of = "2024"\n'
     'source = {publisher = "X"}\n', "source has no url"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "streets"\nvalue = 1\nunit = "count"\nas_of = "2024"\n'
     'source = {url = "https://x.org/a"}\n', "source has no publisher"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "streets"\nvalue = 1\nunit = "count"\nas_of = "2023-02-30"\n'
     'source = "sd"\n', "bad as_of"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "streets"\nvalue = 1\nunit = "count"\nsource = "sd"\n',
     "missing 'as_of'"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "streets"\nvalue = 1\nunit = "count"\nas_of = "2024-04"\n'
     'source = "sd"\n', "after the source's publication date"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "test_road_km"\nvalue = 1117\nunit = "m"\nas_of = "2024"\n'
     'source = "sd"\n', "unit 'm' is not valid for test_road_km"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "test_road_km"\nvalue = 1117\nunit = "km"\nas_of = "2024-02"\n'
     'source = "sd"\n', "duplicate of figure #1 (line 7)"),
    ('[[figure]]\nplace = "Jiading"\nfigure = "streets"\nvalue = 1\nunit = "count"\nas_of = "2024"\n'
     'source = "sdd"\n', "unknown source key 'sdd'"),
])
def test_validation_errors_name_the_record_and_line(tmp_path, extra, message):
    with pytest.raises(ReportedFiguresError) as ei:
        R.load_reported_figures(_write(tmp_path, "\n" + extra))
    msg = ei.value.message
    assert message in msg
    assert "figure #2 (line 15)" in msg  # the second [[figure]] header is on line 15
    assert "\n" not in msg


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ReportedFiguresError, match="file not found"):
        R.load_reported_figures(tmp_path / "nope.toml")
    with pytest.raises(ReportedFiguresError, match="not valid TOML"):
        R.load_reported_figures(_write(tmp_path, "[[figure]\n"))


def test_source_table_errors_name_the_source(tmp_path):
    bad = GOOD.replace('url = "https://shine.cn/biz/event/2403300087"\n', "")
    with pytest.raises(ReportedFiguresError, match=r"source 'sd' \(line 2\).*source has no url"):
        R.load_reported_figures(_write(tmp_path, "", base=bad))


def test_two_targets_of_one_day_are_not_duplicates(tmp_path):
    t = ('[[figure]]\nplace = "Jiading"\nfigure = "test_road_km"\nvalue = {v}\nunit = "km"\nas_of = "2020-09-14"\n'
         'as_of_text = "{by}"\nqualifier = "target"\nsource = {{publisher = "G", url = "https://g.cn/1"}}\n')
    recs = R.load_reported_figures(_write(tmp_path, t.format(v=315, by="by end-2020") + t.format(v=1300, by="by 2022")))
    assert [r.value for r in R.history("Jiading", "test_road_km", figures=recs, include_targets=True)] == [315, 1300, 1117]


# ---------------------------------------------------------------- compare

def _fig(figure: str, value: float, unit: str, **kw) -> R.ReportedFigure:
    src = R.Source(publisher="Shanghai Daily", url="https://shine.cn/biz/event/2403300087")
    return R.ReportedFigure(place="Jiading", figure=figure, value=value, unit=unit, as_of=date(2024, 2, 29),
                            as_of_precision="month", qualifier=kw.pop("qualifier", "exact"), source=src,
                            definition=kw.pop("definition", "not stated" if unit == "km" and "km" in figure else ""),
                            **kw)


def test_compare_deltas_and_reported_only_rows():
    reported = [_fig("test_road_km", 1117, "km"), _fig("area_km2", 463, "km2"), _fig("vehicles", 638, "count"),
                _fig("streets", 636, "count"), _fig("licences", 7, "count")]
    computed = {"test_road_km": ComputedValue(1_340_400.0, "m", "carriageway km, drive filter"),
                "area_km2": ComputedValue(463_550_000.0, "m2", "zone polygon, equal-area")}
    rows = R.compare(reported, computed)
    assert [r["figure"] for r in rows] == ["test_road_km", "area_km2", "vehicles", "streets", "licences"]
    assert set(rows[0]) == set(R.COMPARE_COLUMNS)
    km = rows[0]
    # 1,340.4 - 1,117 = 223.4 km; 223.4 / 1,117 = 20 %
    assert km["computed"] == pytest.approx(1340.4)
    assert km["delta"] == pytest.approx(223.4)
    assert km["delta_pct"] == pytest.approx(20.0)
    assert km["as_of"] == "2024-02" and km["source"] == "Shanghai Daily https://shine.cn/biz/event/2403300087"
    assert "does not say one-way or two-way" in km["note"] and "carriageway" in km["note"]
    area = rows[1]
    # 463.55 - 463 = 0.55 km2; 0.55 / 463 = 0.11879 %
    assert area["delta"] == pytest.approx(0.55) and area["delta_pct"] == pytest.approx(0.118790, rel=1e-4)
    vehicles, roads, licences = rows[2:]
    for row in (vehicles, roads, licences):
        assert row["computed"] is None and row["delta"] is None and row["delta_pct"] is None
    assert vehicles["note"] == "reported only: needs fleet data"
    assert roads["note"] == "reported only: no zone/network given"
    assert licences["note"].startswith("reported only: not derivable")


def test_compare_notes_explain_definitions():
    rows = R.compare(
        [_fig("test_road_km", 1385, "km", definition="two-way"),
         _fig("expressway_km", 2000, "km", qualifier="at_least"),
         _fig("ref_km:G2", 19.5, "km")],
        {"test_road_km": ComputedValue(692.5, "km", "centerline km"),
         "expressway_km": ComputedValue(2100.0, "km", "centerline km"),
         "ref_km:G2": ComputedValue(3.0, "count", "pieces")})
    two_way, at_least, mismatch = rows
    assert two_way["delta_pct"] == pytest.approx(-50.0)
    assert "two-way" in two_way["note"] and "about half" in two_way["note"]
    assert at_least["delta"] == pytest.approx(100.0) and "within the lower bound" in at_least["note"]
    assert mismatch["delta"] is None and "unit mismatch" in mismatch["note"]


def test_compare_lists_computed_only_figures_and_rejects_unknown_names():
    rows = R.compare([_fig("streets", 636, "count")], {"intersections": ComputedValue(1450, "count", "junctions")})
    assert rows[1]["figure"] == "intersections" and rows[1]["reported"] is None
    assert rows[1]["computed"] == 1450 and rows[1]["note"].startswith("computed only")
    with pytest.raises(InputError, match="unknown figure"):
        R.compare([], {"road_km": ComputedValue(1.0, "km")})


def test_compare_place_uses_latest_shipped_figures(shipped):
    rows = R.compare_place("Jiading", {"test_road_km": ComputedValue(1000.0, "km", "centerline km")},
                           as_of="2024-03-01", figures=shipped)
    km = next(r for r in rows if r["figure"] == "test_road_km")
    assert km["reported"] == 1117 and km["delta"] == pytest.approx(-117.0)
    assert km["delta_pct"] == pytest.approx(-117 / 1117 * 100)
    assert next(r for r in rows if r["figure"] == "vehicles")["note"].startswith("reported only: needs fleet data")
