"""summarize(): rows, parameters (Keras' counting), multiply-adds, receptive field, text and JSON."""

import json

import torch
from torch import nn

from cnnlab.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Residual
from cnnlab.model import Sequential
from cnnlab.summary import summarize


def small():
    return Sequential([Conv2D(8, 3, padding="same", activation="relu"), MaxPool2D(), Conv2D(16, 3),
                       BatchNorm(), Flatten(), Dense(10)], input_shape=(1, 12, 12), name="small")


def test_rows_params_mult_adds_and_totals():
    s = small().summary()
    assert [r.layer for r in s.rows] == ["Conv2D", "MaxPool2D", "Conv2D", "BatchNorm", "Flatten", "Dense"]
    assert [r.output_shape for r in s.rows] == [(8, 12, 12), (8, 6, 6), (16, 4, 4), (16, 4, 4), (256,), (10,)]
    # conv: 3*3*1*8+8 = 80, 3*3*8*16+16 = 1168; BatchNorm 4*16 (gamma, beta + moving mean, var); dense 256*10+10
    assert [r.params for r in s.rows] == [80, 0, 1168, 64, 0, 2570]
    # conv: OH*OW*F*KH*KW*C = 12*12*8*9*1 and 4*4*16*9*8; dense IN*OUT
    assert [r.mult_adds for r in s.rows] == [10368, 0, 18432, 0, 0, 2560]
    assert (s.trainable, s.non_trainable) == (80 + 1168 + 32 + 2570, 32)
    assert s.mult_adds == 10368 + 18432 + 2560
    values = 8 * 144 + 8 * 36 + 16 * 16 * 2 + 256 + 10
    assert abs(s.memory_mb - values * 4 / 1e6) < 1e-12


def test_receptive_field_along_the_chain():
    s = small().summary()
    # 3x3 conv: 3; 2x2 pool stride 2: 3 + 1*1 = 4, jump 2; 3x3 conv: 4 + 2*2 = 8; flatten: all
    assert [r.rf_size for r in s.rows] == [(3, 3), (4, 4), (8, 8), (8, 8), None, None]
    assert [r.rf_jump for r in s.rows][:3] == [(1, 1), (2, 2), (2, 2)]


def test_text_table_and_json():
    s = small().summary()
    text = str(s)
    assert repr(s) == text  # a notebook cell ending in model.summary() shows the table
    assert "H=W: (12 + 2*1 - 3)/1 + 1 = 12" in text and "H=W: (6 + 2*0 - 3)/1 + 1 = 4" in text
    assert "Total params: 3,882 (trainable 3,850, non-trainable 32" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("#"))
    rows = [line for line in lines if line[:3].strip().isdigit()]
    assert len(rows) == 6
    start = header.index("output")
    assert all(row[start - 2: start] == "  " for row in rows)  # the output column is aligned
    data = json.loads(json.dumps(s.to_dict()))
    assert data["total_params"] == 3882 and data["layers"][2]["output_shape"] == [16, 4, 4]
    assert data["layers"][4]["receptive_field"] == {"size": "all", "jump": [2, 2]}


class ZooLike(nn.Module):
    """A non-Sequential model: cnnlab layers, a residual, and plain torch leaves."""

    def __init__(self):
        super().__init__()
        self.conv1 = Conv2D(4, 3, padding="same", in_channels=3)
        self.act = nn.ReLU()
        self.layer1 = Residual([Conv2D(4, 3, padding="same"), BatchNorm()], activation="relu")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)
        self.layer1.build((4, 8, 8))

    def forward(self, x):
        x = self.layer1(self.act(self.conv1(x)))
        return self.fc(self.pool(x).flatten(1))


def test_any_module_built_from_cnnlab_layers():
    model = ZooLike().train()
    before = model.layer1.block[1].bn.running_mean.clone()
    s = summarize(model, (3, 8, 8))
    assert [(r.name, r.layer) for r in s.rows] == [
        ("conv1", "Conv2D"), ("act", "ReLU"), ("layer1.block.0", "Conv2D"), ("layer1.block.1", "BatchNorm"),
        ("layer1", "Residual"), ("pool", "AdaptiveAvgPool2d"), ("fc", "Linear")]
    assert [r.params for r in s.rows] == [112, 0, 148, 16, 0, 0, 25]
    assert s.rows[-1].mult_adds == 20 and s.rows[2].mult_adds == 8 * 8 * 4 * 9 * 4
    assert s.total_params == sum(p.numel() for p in model.parameters()) + 8
    assert model.training and torch.equal(model.layer1.block[1].bn.running_mean, before)


def test_adaptive_pooling_widens_the_receptive_field():
    # 8 -> 6 rows: output row k pools input rows floor(8k/6) .. ceil(8(k+1)/6) - 1, two rows each,
    # so a 3x3 conv's RF 3 grows to 3 + (2 - 1)*1 = 4 and the step to ceil(8/6) = 2
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d((6, 3)))
    rows = summarize(model, (1, 8, 9)).rows
    assert rows[1].rf_size == (4, 5) and rows[1].rf_jump == (2, 3)  # 9 -> 3 columns: windows of 3
    same = summarize(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(8)), (1, 8, 8)).rows
    assert same[1].rf_size == (3, 3) and same[1].rf_jump == (1, 1)  # 8 -> 8 pools nothing
