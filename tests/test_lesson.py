"""explain_conv / explain_pool: the lectures' worked examples, step by step."""

import pytest

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.lesson import explain_conv, explain_pool, parse_matrix


def grid_after(text: str, title: str) -> list[list[float]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        rows.append([float(v) for v in line.split()])
    return rows


def test_default_is_the_lecture_example():
    text = explain_conv()
    assert grid_after(text, "feature map") == [[40, 32], [26, 25]]
    assert "0*1 + 1*0 + 7*1 + 5*1 + 5*2 + 6*0 + 5*3 + 3*0 + 3*1 = 40" in text
    assert "OH = (4 + 2*0 - 3)/1 + 1 = 2" in text and "without flipping" in text


def test_second_filter_and_zero_padding():
    k = parse_matrix("1,0,0;1,2,1;1,2,3")
    assert grid_after(explain_conv(kernel=k), "feature map") == [[41, 33], [25, 23]]
    text = explain_conv(kernel=k, padding=1)
    assert grid_after(text, "feature map") == [[26, 42, 55, 35], [34, 41, 33, 28], [18, 25, 23, 14], [3, 9, 8, 8]]
    assert "OH = (4 + 2*1 - 3)/1 + 1 = 4" in text and "input with zero padding" in text
    assert grid_after(explain_conv(kernel=k, padding="same"), "feature map")[0] == [26, 42, 55, 35]


def test_every_step_sums_to_its_output():
    text = explain_conv(input=parse_matrix("1 2 3 4 5;6 7 8 9 10;1 0 1 0 1;2 2 2 2 2;3 1 4 1 5"),
                        kernel=[[1, -1], [2, 0]], stride=2, padding="same")
    steps = [line for line in text.splitlines() if line.startswith("out[")]
    assert len(steps) == 9  # ceil(5/2) = 3 per side
    for line in steps:
        terms, value = line.rsplit(": ", 1)[1].rsplit(" = ", 1)
        assert sum(float(a) * float(b) for a, b in (t.split("*") for t in terms.split(" + "))) == float(value)


def test_pooling_default_and_modes():
    assert grid_after(explain_pool(), "pooled map") == [[6, 8], [14, 16]]
    assert "max(1, 2, 5, 6) = 6" in explain_pool()
    assert grid_after(explain_pool(mode="min"), "pooled map") == [[1, 3], [9, 11]]
    assert grid_after(explain_pool(mode="avg"), "pooled map") == [[3.5, 5.5], [11.5, 13.5]]
    # 'same' on 3x3: the bottom-right window holds only the 9, which is its mean
    same = explain_pool(parse_matrix("1,2,3;4,5,6;7,8,9"), mode="avg", padding="same")
    assert grid_after(same, "pooled map") == [[3, 4.5], [7.5, 9]]


def test_errors():
    with pytest.raises(ConfigError, match="rows of equal length"):
        parse_matrix("1,2;3")
    with pytest.raises(ConfigError, match="not a number"):
        parse_matrix("1,x")
    with pytest.raises(ShapeError, match=r"a 3x3 filter does not fit a 2x2 input .*use padding=1 or more, or 'same'"):
        explain_conv(input=[[1, 2], [3, 4]])
    with pytest.raises(ConfigError, match="'max', 'avg' or 'min'"):
        explain_pool(mode="median")


def test_printed_terms_add_up_to_the_printed_sum():
    # 4 significant digits printed -12.746 as -12.75, which the terms shown do not add up to
    text = explain_conv(parse_matrix("-1.5,2,0.25;4,-5,6;7,8,-9.125"), parse_matrix("0.5,-1;1e-3,2"))
    assert "-1.5*0.5 + 2*-1 + 4*0.001 + -5*2 = -12.746" in text
    assert grid_after(text, "feature map") == [[-12.746, 12.745], [23.007, -26.742]]
    assert "0.1*1 + 0.2*1 = 0.3" in explain_conv(parse_matrix("0.1,0.2"), parse_matrix("1,1"))


def test_non_finite_values_are_refused():
    for text in ("nan,1;1,1", "1,inf;1,1", "1,1;-inf,1"):
        with pytest.raises(ConfigError, match="nan or inf"):
            parse_matrix(text)


def test_a_filter_that_does_not_fit_gets_the_padding_that_would():
    # H + 2P - FH >= 0: a 5x5 filter on a 2x2 input needs P >= 2 (padding=1 gives OH = 0)
    with pytest.raises(ShapeError, match=r"= 0\b.*use padding=2 or more, or 'same'"):
        explain_conv(parse_matrix("1,2;3,4"), [[1.0] * 5] * 5, padding=1)
    with pytest.raises(ShapeError, match=r"use padding=1 or more"):  # 3x4 input, 1x6 filter: (6-4)/2
        explain_conv(parse_matrix("1,2,3,4;1,2,3,4;1,2,3,4"), [[1.0] * 6])
