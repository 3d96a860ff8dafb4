"""Words: every sentence of the report, in English and Korean, from one table.

Inputs
    The verdict mapping (numbers, claim, batches) and the language of a
    :class:`~pipeline.publish.style.Style` (``en`` or ``ko``).
Outputs
    Strings: headings, table headers, captions and the sentences built from the run's
    numbers. :mod:`pipeline.publish.report` lays them out; nothing here reads or writes.

The Korean text follows Korean newspaper usage: years as "2025년", date ranges as
"2025년 12월 15~29일", plain declarative endings ("~했다"), "곳" for counted places. The
claim's own text and source are quoted as the claim file gives them, never translated.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "nightlights report: {b} to {t}",
        "synthetic_title": "[SYNTHETIC] ",
        "synthetic_more": "Every number, table and chart below is made from generated rasters, to show what the "
        "pipeline produces.",
        "h1": "Night lights at the sites, {b} to {t}",
        "claim_line": "The claim: “{text}” ({source}).",
        "claim_md": "Claim: “{text}” ({source})",
        "col_brightened": "Brightened",
        "col_similar": "Similar or dimmer",
        "col_insufficient": "Insufficient data",
        "row_claim": "Claim",
        "row_run": "This run (batch {batch}, {n} sites)",
        "h_batches": "Which batches the target year can speak for",
        "h_method": "Method",
        "h_sites": "Sites",
        "h_charts": "Charts",
        "h_provenance": "Provenance",
        "h_parameters": "Parameters",
        "h_inputs": "Input files (SHA-256)",
        "files": "Files",
        "parameter": "Parameter",
        "value": "Value",
        "month": "Month",
        "file": "File",
        "sites_note": "Baseline and target: yearly statistic of matched months, nW/cm²/sr. GIS files: "
        "sites_classified.geojson, sites_classified.parquet (GeoParquet), site_months.parquet.",
        "Site": "Site",
        "Hangul": "Hangul",
        "Province": "Province",
        "County": "County",
        "Batch": "Batch",
        "Baseline": "Baseline",
        "Target": "Target",
        "Change": "Change % [95% CI]",
        "Class": "Class",
        "Ring": "Ring-adjusted",
        "Months": "Months",
        "Data": "Data",
        "Product": "Product",
        "Period": "Period",
        "Source": "Source",
        "Folder": "Folder",
        "Software": "Software",
        "Claim": "Claim",
        "Built": "Built",
        "synthetic_data": "SYNTHETIC (generated demo rasters)",
        "real_data": "real satellite data",
        "period": "{a} to {b}",
        "unknown": "unknown",
        "not_found": "not found",
        "built": "%Y-%m-%d %H:%M UTC (SOURCE_DATE_EPOCH)",
        "brightened": "brightened",
        "unchanged": "unchanged",
        "dimmed": "dimmed",
        "insufficient_data": "insufficient data",
    },
    "ko": {
        "title": "야간 조도 보고서: {b}년 대비 {t}년",
        "synthetic_title": "[합성 데이터] ",
        "synthetic_more": "아래의 모든 수치와 표, 그림은 파이프라인이 무엇을 만드는지 보여주려고 생성한 래스터에서 나왔다.",
        "h1": "지정 지역의 야간 불빛, {b}년 대비 {t}년",
        "claim_line": "검증 대상 주장: “{text}” ({source}).",
        "claim_md": "검증 대상 주장: “{text}” ({source})",
        "col_brightened": "밝아짐",
        "col_similar": "비슷하거나 어두워짐",
        "col_insufficient": "자료 부족",
        "row_claim": "주장",
        "row_run": "이번 분석 ({batch}년 지정 {n}곳)",
        "h_batches": "목표 연도 자료로 말할 수 있는 지정 차수",
        "h_method": "분석 방법",
        "h_sites": "지점별 결과",
        "h_charts": "그림",
        "h_provenance": "자료 출처와 재현 정보",
        "h_parameters": "매개변수",
        "h_inputs": "입력 파일 (SHA-256)",
        "files": "파일",
        "parameter": "매개변수",
        "value": "값",
        "month": "월",
        "file": "파일",
        "sites_note": "기준값과 비교값: 두 해에 모두 유효한 달의 연간 통계값(nW/cm²/sr). GIS 파일: "
        "sites_classified.geojson, sites_classified.parquet (GeoParquet), site_months.parquet.",
        "Site": "지점",
        "Hangul": "한글 이름",
        "Province": "도",
        "County": "시·군",
        "Batch": "지정 연도",
        "Baseline": "기준값",
        "Target": "비교값",
        "Change": "변화율 % [95% 구간]",
        "Class": "분류",
        "Ring": "주변 보정 분류",
        "Months": "비교 개월 수",
        "Data": "자료",
        "Product": "제품",
        "Period": "기간",
        "Source": "출처",
        "Folder": "폴더",
        "Software": "소프트웨어",
        "Claim": "주장",
        "Built": "작성 시각",
        "synthetic_data": "합성 자료 (생성된 데모 래스터)",
        "real_data": "실제 위성 자료",
        "period": "{a}~{b}",
        "unknown": "알 수 없음",
        "not_found": "찾을 수 없음",
        "built": "%Y년 %m월 %d일 %H:%M UTC (SOURCE_DATE_EPOCH)",
        "brightened": "밝아짐",
        "unchanged": "변화 없음",
        "dimmed": "어두워짐",
        "insufficient_data": "자료 부족",
    },
}

CHART_NAMES = {
    "en": {},  # English names come from the chart's file name ("small multiples")
    "ko": {
        "verdict": "지점별 변화",
        "small_multiples": "월별 복사휘도",
        "map": "지도",
        "before_after": "전후 비교",
        "robustness": "방법에 따른 결과",
        "county_change": "시·군별 변화",
    },
}

CAPTIONS: dict[str, dict[str, str]] = {
    "en": {
        "verdict": "Change of each site from the baseline to the target year with its 95% interval, sorted; "
        "grey band: changes too small to count; markers and colours give the class.",
        "small_multiples": "Monthly radiance of each site; gaps and crosses are months without a valid "
        "observation (clouds, stray light), never read as darkness.",
        "map": "The sites of every batch (marker shape) and their class (colour) over the target year's mean "
        "night-light composite (the data itself, no web map), with country, province and county borders; "
        "a thin line ties each label to its site.",
        "before_after": "Baseline-year and target-year mean of valid months around each site on one colour "
        "scale; outline: the site polygon.",
        "robustness": "Number of claim sites classed brightened under every method variant; "
        "hatched bar: the claim's count.",
        "county_change": "Change in light of every county: ln ratio of its mean valid radiance, target against "
        "baseline year, on calendar months valid in both; hatched: no matched month; markers: sites.",
    },
    "ko": {
        "verdict": "기준 연도 대비 목표 연도 각 지점의 변화와 95% 구간(변화 순). 회색 띠는 변화로 보기에 너무 작은 범위이고, "
        "표식과 색은 분류를 나타낸다.",
        "small_multiples": "지점별 월간 복사휘도. 끊긴 곳과 ×표는 구름이나 미광 때문에 유효한 관측이 없는 달로, 어둠으로 "
        "읽지 않았다.",
        "map": "목표 연도 평균 야간 조도 영상(웹 지도가 아닌 자료 그 자체) 위에 지정 차수별 지점(표식 모양)과 분류(색)를 "
        "나라·도·시군 경계와 함께 그렸다. 가는 선이 이름과 지점을 잇는다.",
        "before_after": "각 지점 주변의 기준 연도와 목표 연도 유효 월 평균을 같은 색 척도로 나란히 보였다. 윤곽선은 지점 "
        "범위다.",
        "robustness": "방법 변형마다 밝아진 것으로 분류된 주장 대상 지점 수. 빗금 막대는 주장의 수치다.",
        "county_change": "시·군별 불빛 변화: 두 해에 모두 유효한 달의 평균 복사휘도 비(로그). 빗금은 비교할 달이 없는 "
        "곳, 표식은 지점이다.",
    },
}


def words(lang: str) -> dict[str, str]:
    return WORDS["ko" if lang == "ko" else "en"]


def caption(name: str, lang: str) -> str:
    table = CAPTIONS["ko" if lang == "ko" else "en"]
    return table.get(name) or CAPTIONS["en"].get(name, "")


def chart_name(name: str, lang: str) -> str:
    return CHART_NAMES.get(lang, {}).get(name) or name.replace("_", " ").capitalize()


def batch_name(label: Any, lang: str) -> str:
    """A batch label in words: 'batch 2024' / '2024년 지정', 'batch “pilot”' / '‘pilot’ 묶음'.
    Only the wording looks at whether the label is a year."""
    if label is None or (isinstance(label, float) and label != label):
        return "묶음 없음" if lang == "ko" else "no batch"
    text = str(label)
    if len(text) == 4 and text.isdigit():
        return f"{text}년 지정" if lang == "ko" else f"batch {text}"
    return f"‘{text}’ 묶음" if lang == "ko" else f"batch “{text}”"


def class_word(value: Any, lang: str) -> str:
    key = str(value)
    return words(lang).get(key, key.replace("_", " "))


def headline(v: dict[str, Any], lang: str) -> str:
    """The verdict in one sentence (English: :func:`pipeline.judge.verdict.headline`)."""
    from pipeline.judge.verdict import headline as english

    if lang != "ko":
        return english(v)
    c, claim = v["claim_sites"]["counts"], v["claim"]
    prefix = "[합성 데모] " if v["data_kind"] == "synthetic" else ""
    return (
        f"{prefix}{v['baseline_year']}년 대비 {v['target_year']}년, {batch_name(claim['batch'], 'ko')} 지점: 밝아짐 "
        f"{c['brightened']}곳, 변화 없음 {c['unchanged']}곳, 어두워짐 {c['dimmed']}곳, 자료 부족 "
        f"{c['insufficient_data']}곳. 주장(밝아짐 {claim['brightened']}곳, 비슷하거나 어두워짐 "
        f"{claim['similar_or_dimmer']}곳)에 대한 판정: {status(v, lang)}." + caveat_ko(v)
    )


def caveat_ko(v: dict[str, Any]) -> str:
    """The claim's caveat (:func:`pipeline.judge.verdict.claim_caveat`) in Korean, from its numbers."""
    c = v.get("claim_caveat")
    if not c:
        return ""
    t, last = v["target_year"], c.get("inauguration_last")
    when = f"(마지막 준공 {last})" if last else ""
    return (
        f" 단서: {batch_name(v['claim']['batch'], 'ko')} 공장은 {t}년 자료로 가동 여부를 볼 수 없다{when}. "
        f"{t}년 12개월 중 준공 이후는 {c.get('observable_months') or 0}개월뿐이어서, 이 수는 새 공장이 아니라 "
        "지역의 불빛을 말한다."
    )


def status(v: dict[str, Any], lang: str) -> str:
    """The claim's status; in Korean from the verdict's numbers, not by translating the English line."""
    s = str(v["claim_status"])
    if lang != "ko":
        return s
    c = v["claim_sites"]
    if s == "agrees":
        return "일치"
    if s.startswith("disagrees"):
        return f"불일치 (밝아짐 {c['counts']['brightened']}곳, 비슷하거나 어두워짐 {c['similar_or_dimmer']}곳)"
    if s.startswith("undetermined"):
        return (
            f"판정 불가 ({c['n_sites']}곳 중 {c['counts']['insufficient_data']}곳 자료 부족, 나머지 중 "
            f"{c['counts']['brightened']}곳 밝아짐)"
        )
    claim = v["claim"]
    if (claim.get("baseline_year"), claim.get("target_year")) != (
        v["baseline_year"],
        v["target_year"],
    ):
        return (
            f"판정하지 않음 (주장은 {claim.get('baseline_year')}년과 {claim.get('target_year')}년을 비교하는데, "
            f"이번 분석은 {v['baseline_year']}년과 {v['target_year']}년을 비교함)"
        )
    return (
        f"판정하지 않음 (이번 분석에 {batch_name(claim['batch'], 'ko')} 지점이 {c['n_sites']}곳 있으나 주장은 "
        f"{claim['n_sites']}곳에 관한 것)"
    )


def _pct_up_down(threshold: float) -> tuple[float, float]:
    return 100 * np.expm1(threshold), -100 * np.expm1(-threshold)


def method_paragraph(v: dict[str, Any], sens_rows: int | None, lang: str) -> str:
    """The method in words a reader without remote-sensing training can follow."""
    p = v["parameters"]
    up, down = _pct_up_down(float(p["threshold"]))
    months = p.get("months") or list(range(1, 13))
    r_km, ri, ro = p["default_radius_m"] / 1000, p["ring_inner_m"] / 1000, p["ring_outer_m"] / 1000
    conf, valid = 100 * p["confidence"], 100 * p["min_valid_fraction"]
    b, t = v["baseline_year"], v["target_year"]
    if lang == "ko":
        stat = {"median": "중앙값", "mean": "평균", "sol": "빛의 합"}.get(
            p["statistic"], p["statistic"]
        )
        text = (
            f"VIIRS 위성은 밤마다 지구를 촬영하고, 월간 합성 영상은 한 달 동안 구름 없는 밤의 관측을 평균해 약 500m "
            f"크기(15각초) 화소의 영상 한 장으로 만든다. 각 지점은 보도된 위치를 중심으로 반지름 {r_km:g}km 원 안의 "
            f"화소를 썼다(지점 위치의 정확도가 1~2km 수준이기 때문이다). 화소마다 원 안에 든 면적 비율만큼 가중치를 "
            f"줬다. 한 달의 값은 지점 면적의 {valid:.0f}% 이상이 관측된 경우에만 인정했고(EOG 자료는 구름 없는 밤이 "
            f"{p['min_cf_cvg']}번 이상), 관측이 없는 달은 어두운 달이 아니라 빠진 달로 처리했다. {t}년과 {b}년은 두 "
            f"해 모두 유효한 같은 달끼리만 비교했다(눈과 달빛의 영향이 계절마다 다르기 때문이다. 검토한 달 "
            f"{len(months)}개, 최소 {p['min_matched_months']}개 필요). 해마다 달별 값의 {stat}을 구해 그 비를 봤다. "
            f"'밝아짐'은 {up:.0f}% 이상 늘었고 달마다의 변동으로 구한 {conf:.0f}% 구간(부트스트랩)이 '변화 없음'을 "
            f"포함하지 않을 때만, '어두워짐'은 같은 기준으로 {down:.0f}% 이상 줄었을 때만 붙였다. 나머지는 '비슷함(변화 "
            f"없음)'이다. 각 지점에서 {ri:g}~{ro:g}km 떨어진 고리 모양 주변 지역으로 전력 사정, 센서, 날씨처럼 지역 전체에 "
            f"걸친 변화를 쟀고, 이를 뺀 '주변 보정 분류'를 함께 실었다. 주장이 불빛의 밝기 자체를 말하므로 대표 분류는 "
            f"지점 자체의 변화로 정했다."
        )
        if sens_rows:
            text += (
                f" 주장의 분석 방법이 공개되지 않았기 때문에 임계값, 반지름, 연간 통계, 비교 달, 주변 보정, 화소 규칙을 "
                f"바꾼 {sens_rows}가지 변형으로 분류를 반복해 결과가 이런 선택에 얼마나 좌우되는지 보였다."
            )
        return text
    text = (
        f"Satellites of the VIIRS series photograph the Earth at night; monthly composites average each "
        f"month's cloud-free nights into one image of 15 arc-second pixels (about 500 m). For each site we "
        f"took the pixels under its circle of {r_km:g} km radius around the reported "
        f"location (the sites are located only to about 1 to 2 km), weighting each pixel by the share of it "
        f"inside the circle. A month counts only when at least {valid:.0f}% of the "
        f"site's area was observed (at least {p['min_cf_cvg']} cloud-free nights for EOG data); a month "
        f"without observations is missing, not dark. We compared {t} with {b} "
        f"only on calendar months valid in both years (snow and moonlight differ by season; "
        f"{len(months)} calendar months considered, at least {p['min_matched_months']} needed), took the "
        f"{p['statistic']} month of each year and their ratio. A site is called brightened only when it rose "
        f"by at least {up:.0f}% and a {conf:.0f}% interval from its month-to-month variation "
        f"(bootstrap) excludes no change; dimmed when it fell by at least {down:.0f}% under the same rule; "
        f"otherwise similar (unchanged). A ring {ri:g} to {ro:g} km "
        f"around each site measures region-wide change (power supply, sensor, weather); the ring-adjusted "
        f"class is reported beside the headline class, which uses the site's own change because the claim "
        f"speaks of luminosity."
    )
    if sens_rows:
        text += (
            f" Because the claim's method is unpublished, we repeated the classification for {sens_rows} "
            f"defensible variants (threshold, radius, yearly statistic, months, ring adjustment, pixel "
            f"rule) to show how much the count depends on such choices."
        )
    return text


def robustness_sentence(v: dict[str, Any], lang: str) -> str:
    r = v.get("robustness")
    claim = v["claim"]
    k, n = claim["brightened"], claim["n_sites"]
    if lang == "ko":
        if not r:
            return "이번 분석에서는 방법 변형을 계산하지 않았다(--no-sensitivity)."
        scope = "주장 대상 지점 중 " if r.get("scope", "").startswith("the claim") else ""
        text = (
            f"방법 변형 {r['n_variants']}가지에서 {scope}밝아진 지점은 {r['brightened_min']}~{r['brightened_max']}곳"
            f"(중앙값 {r['brightened_median']:g}곳)이었다"
        )
        if r.get("share_exactly_k_of_n") is None:
            return (
                text
                + f". 주장의 {n}곳이 이번 분석에 모두 있지 않아 '{n}곳 중 {k}곳'의 비율은 내지 않았다."
            )
        return (
            text
            + f". 정확히 {n}곳 중 {k}곳인 변형은 {100 * r['share_exactly_k_of_n']:.0f}%, {k}곳 이하인 변형은 "
            f"{100 * r['share_at_most_k']:.0f}%였다."
        )
    if not r:
        return "Method variants were not computed for this run (--no-sensitivity)."
    text = (
        f"Across {r['n_variants']} method variants, between {r['brightened_min']} and {r['brightened_max']} "
        f"{'claim ' if r.get('scope', '').startswith('the claim') else ''}sites brightened "
        f"(median {r['brightened_median']:g})"
    )
    if r.get("share_exactly_k_of_n") is None:
        return (
            text
            + f"; the claim's {n} sites are not all in this run, so no share of '{k} of {n}' is given."
        )
    return (
        text + f"; exactly {k} of {n} in {100 * r['share_exactly_k_of_n']:.0f}% of variants, "
        f"at most {k} in {100 * r['share_at_most_k']:.0f}%."
    )


def calibration_sentence(v: dict[str, Any], lang: str) -> str:
    cal = v.get("calibration")
    if not cal:
        return ""
    if lang == "ko":
        return (
            f"변화가 없어야 할 대조 지점 {cal['n_controls']}곳은 95%가 로그 비 {cal['abs_log_ratio_p95']:.2f} 이내로 "
            f"변했다(분류 임계값은 {cal['default_threshold']:g})."
        )
    return (
        f"Stable control places ({cal['controls']}, n = {cal['n_controls']}) changed by |ln ratio| "
        f"{cal['abs_log_ratio_p95']:.2f} or less in 95% of cases, against the threshold "
        f"{cal['default_threshold']:g}."
    )


def _ko_date_range(first: str | None, last: str | None) -> str:
    if not first or not last:
        return ""
    (y0, m0, d0), (y1, m1, d1) = (tuple(int(x) for x in s.split("-")) for s in (first, last))
    if (y0, m0) == (y1, m1):
        return f"{y0}년 {m0}월 {d0}~{d1}일" if d1 != d0 else f"{y0}년 {m0}월 {d0}일"
    if y0 == y1:
        return f"{y0}년 {m0}월 {d0}일~{m1}월 {d1}일"
    return f"{y0}년 {m0}월 {d0}일~{y1}년 {m1}월 {d1}일"


def observability_sentences(v: dict[str, Any], lang: str) -> list[str]:
    """One sentence per batch: can the target year show its factories running (verdict ``batches``)?"""
    if lang != "ko":
        return [b["note"] for b in v.get("batches", [])]
    out = []
    for b in v.get("batches", []):
        t, m = b.get("target_year", v["target_year"]), b.get("observable_months")
        when = _ko_date_range(b.get("inauguration_first"), b.get("inauguration_last"))
        head = f"{batch_name(b['batch'], 'ko')} {b['n_sites']}곳" + (
            f"(준공 {when})" if when else ""
        )
        if b["status"] == "observable":
            out.append(
                f"{head}: {t}년 12개월 모두 마지막 준공 이후라 {t}년 자료로 공장 가동 여부를 볼 수 있다."
            )
        elif b["status"] == "partly observable":
            out.append(
                f"{head}: {t}년 12개월 중 {m}개월만 마지막 준공 이후여서, 한 해에 준공 전후의 달이 섞여 있다."
            )
        elif b["status"] == "not yet observable":
            why = (
                f"준공 이후의 달이 {t}년에 {m or 0}개월뿐이어서"
                if when
                else f"착공이 {t}년 이후여서"
            )
            out.append(
                f"{head}: 아직 관측할 수 없다. {why} {t}년 자료로는 이 공장들의 가동을 보여줄 수 없다."
            )
        else:
            out.append(f"{head}: 준공일을 몰라 {t}년 자료가 가동을 보여주는지 알 수 없다.")
    return out


_MD_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data|file)\s*:")


def md_inline(text: Any) -> str:
    """Text from an input (site name, claim) as inert Markdown: it shows as typed, but no HTML tag,
    link, image or autolink can be made of it (``<>&`` become entities, ``[ ]`` are escaped,
    ``javascript:`` and the like lose their colon), and it stays on its line."""
    s = re.sub(r"[\r\n]+", " ", str(text))
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace("`", "\\`")
    return _MD_SCHEME.sub(lambda m: f"{m[1]}&#58;", s)
