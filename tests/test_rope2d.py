"""2-D positions: rotary scores depend on row and column offsets, the query token sits on the agent, and
the goal embedding gives every cell its offset from the goal."""

from __future__ import annotations

import pytest
import torch

from hrm_agent.config import HRMConfig
from hrm_agent.layers import RotaryEmbedding2D, apply_rotary_pos_emb
from hrm_agent.model import HRMQNetwork

ROWS, COLS, HD = 5, 7, 8


def score(tables, q, k, i, j):
    cos, sin = tables
    qi = apply_rotary_pos_emb(q.view(1, 1, 1, HD), (cos[i : i + 1], sin[i : i + 1]))
    kj = apply_rotary_pos_emb(k.view(1, 1, 1, HD), (cos[j : j + 1], sin[j : j + 1]))
    return float((qi * kj).sum())


def test_grid_scores_depend_only_on_the_row_and_column_offsets():
    rope = RotaryEmbedding2D(HD, (ROWS, COLS), base=100.0)
    tables = (rope.grid_cos, rope.grid_sin)
    torch.manual_seed(0)
    q, k = torch.randn(HD), torch.randn(HD)
    cell = lambda r, c: r * COLS + c  # noqa: E731
    # the same offset (1 down, 2 right) from two places scores the same ...
    a = score(tables, q, k, cell(0, 0), cell(1, 2))
    b = score(tables, q, k, cell(3, 4), cell(4, 6))
    assert a == pytest.approx(b, abs=1e-5)
    # ... and offsets that are equal in row-major order but not in 2-D do not:
    # (0,5) -> (2,0) is 9 cells on in row-major order, as (0,0) -> (1,2) is, but 2 down and 5 left
    assert cell(2, 0) - cell(0, 5) == cell(1, 2) - cell(0, 0)
    c = score(tables, q, k, cell(0, 5), cell(2, 0))
    assert c != pytest.approx(a, abs=1e-3)


def test_the_query_token_takes_the_anchor_cell():
    config = HRMConfig(
        seq_len=ROWS * COLS, vocab_size=6, num_actions=4, hidden_size=16, num_heads=2, H_layers=1, L_layers=1,
        pos_encodings="rope2d", grid_shape=(ROWS, COLS), rope_anchor_token=4,
    )
    model = HRMQNetwork(config)
    tokens = torch.zeros(2, ROWS * COLS, dtype=torch.uint8)
    tokens[0, 2 * COLS + 3] = 4
    tokens[1, 4 * COLS + 1] = 4
    cos, _ = model.encoder.positions(tokens)
    assert cos.shape == (2, 1 + ROWS * COLS, 8)
    torch.testing.assert_close(cos[0, 0], cos[0, 1 + 2 * COLS + 3])
    torch.testing.assert_close(cos[1, 0], cos[1, 1 + 4 * COLS + 1])
    # the network is translation-aware: moving the agent changes the Q-values
    _, q, _ = model(model.initial_carry(2), tokens)
    assert not torch.allclose(q[0], q[1])


@pytest.mark.parametrize(
    "overrides, message",
    [({"grid_shape": None}, "grid_shape"), ({"grid_shape": (3, 3)}, "grid_shape"), ({"num_heads": 4}, "multiple of 4"),
     ({"rope_anchor_token": None}, "rope_anchor_token")],
)
def test_rope2d_config_is_checked(overrides, message):
    fields = dict(seq_len=ROWS * COLS, vocab_size=6, num_actions=4, hidden_size=24, num_heads=2,
                  pos_encodings="rope2d", grid_shape=(ROWS, COLS), rope_anchor_token=4)
    with pytest.raises(ValueError, match=message):
        HRMConfig(**{**fields, **overrides})


def test_goal_embedding_gives_the_query_the_agents_offset_from_the_goal():
    torch.manual_seed(2)
    config = HRMConfig(
        seq_len=ROWS * COLS, vocab_size=6, num_actions=4, hidden_size=16, num_heads=2, H_layers=1, L_layers=1,
        pos_encodings="rope2d", grid_shape=(ROWS, COLS), rope_anchor_token=4, goal_token=5, goal_embedding=True,
    )
    model = HRMQNetwork(config)
    cell = lambda r, c: r * COLS + c  # noqa: E731
    tokens = torch.zeros(3, ROWS * COLS, dtype=torch.uint8)
    tokens[0, cell(1, 1)], tokens[0, cell(2, 4)] = 4, 5  # goal 1 down 3 right of the agent
    tokens[1, cell(2, 2)], tokens[1, cell(3, 5)] = 4, 5  # the same offset elsewhere
    tokens[2, cell(2, 2)], tokens[2, cell(2, 5)] = 4, 5  # another offset
    offsets = model.encoder.goal_offsets(tokens)
    at = lambda r, c: 1 + cell(r, c)  # noqa: E731
    assert offsets[0, 0] == offsets[0, at(1, 1)] == offsets[1, 0]  # query: the agent's offset from the goal
    assert offsets[0, 0] != offsets[2, 0]
    assert offsets[0, at(2, 4)] == offsets[2, at(2, 5)]  # the goal's own cell: offset (0, 0)
    assert offsets.min() >= 0 and offsets.max() < (2 * ROWS - 1) * (2 * COLS - 1)
    x = model.encoder.input_embeddings(tokens)
    torch.testing.assert_close(x[0, 0], x[1, 0])
    assert not torch.allclose(x[0, 0], x[2, 0])
    with pytest.raises(ValueError, match="goal_embedding needs goal_token"):
        HRMConfig(**{**config.model_dump(), "goal_token": None})
