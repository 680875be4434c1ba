"""The neighbours read-out: Q(s, a) is one shared value read at the cell action a leads to."""

from __future__ import annotations

import pytest
import torch

from envs.tokens import PASSABLE
from hrm_agent.config import HRMConfig
from hrm_agent.model import HRMCarry, HRMQNetwork
from hrm_agent.rollout import Tokenizer

ROWS, COLS = 5, 7
UP, RIGHT, DOWN, LEFT = (-1, 0), (0, 1), (1, 0), (0, -1)
FIELDS = dict(seq_len=ROWS * COLS, vocab_size=6, num_actions=4, hidden_size=16, num_heads=2, H_layers=1, L_layers=1,
              pos_encodings="rope2d", grid_shape=(ROWS, COLS), rope_anchor_token=4, readout="neighbors",
              action_offsets=(UP, RIGHT, DOWN, LEFT))


def cell(r: int, c: int) -> int:
    return r * COLS + c


def grid_with_agent(*cells: tuple[int, int]) -> torch.Tensor:
    tokens = torch.zeros(len(cells), ROWS * COLS, dtype=torch.uint8)
    for b, (r, c) in enumerate(cells):
        tokens[b, cell(r, c)] = 4
    return tokens


def test_each_action_reads_the_cell_it_leads_to_and_a_move_off_the_grid_the_agents_own():
    model = HRMQNetwork(HRMConfig(**FIELDS))
    tokens = grid_with_agent((2, 3), (0, 0), (4, 6))
    at = lambda r, c: 1 + cell(r, c)  # noqa: E731  (position: the query token comes first)
    assert model.head.readout_positions(tokens).tolist() == [
        [at(1, 3), at(2, 4), at(3, 3), at(2, 2)],  # up, right, down, left of the middle
        [at(0, 0), at(0, 1), at(1, 0), at(0, 0)],  # top-left corner: up and left stay put
        [at(3, 6), at(4, 6), at(4, 6), at(4, 5)],  # bottom-right corner: right and down stay put
    ]


def test_with_stay_on_blocked_a_move_into_a_wall_or_closed_door_reads_the_agents_own_cell():
    wall, door_open, door_closed = 1, 2, 3
    model = HRMQNetwork(HRMConfig(**FIELDS, stay_on_blocked=True, blocking_tokens=(wall, door_closed)))
    plain = HRMQNetwork(HRMConfig(**FIELDS))
    tokens = grid_with_agent((2, 3), (0, 0))
    tokens[0, cell(1, 3)] = wall  # above the first agent
    tokens[0, cell(2, 4)] = door_closed  # right of it
    tokens[0, cell(3, 3)] = door_open  # below it: passable
    tokens[1, cell(1, 0)] = door_closed  # below the corner agent
    at = lambda r, c: 1 + cell(r, c)  # noqa: E731
    assert model.head.readout_positions(tokens).tolist() == [
        [at(2, 3), at(2, 3), at(3, 3), at(2, 2)],  # up and right blocked: the agent's cell
        [at(0, 0), at(0, 1), at(0, 0), at(0, 0)],  # off the grid and into a door alike
    ]
    assert plain.head.readout_positions(tokens)[0, :2].tolist() == [at(1, 3), at(2, 4)]  # off: the wall's cell
    torch.manual_seed(0)
    carry, q, _ = model(model.initial_carry(2), tokens)
    assert q[0, 0] == q[0, 1]  # both blocked moves: the value of staying put


@pytest.mark.parametrize("overrides, message", [
    ({"stay_on_blocked": True}, "needs blocking_tokens"),
    ({"stay_on_blocked": True, "blocking_tokens": (1, 9)}, "below vocab_size"),
])
def test_stay_on_blocked_is_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        HRMConfig(**{**FIELDS, **overrides})


def test_stay_on_blocked_has_no_effect_on_the_query_read_out():
    torch.manual_seed(0)
    model = HRMQNetwork(HRMConfig(**{**FIELDS, "readout": "query", "stay_on_blocked": True}))
    assert not hasattr(model, "blocking")
    carry, q, _ = model(model.initial_carry(1), grid_with_agent((2, 3)))
    torch.testing.assert_close(q, model.head.q_head(carry.z_H[:, 0].float()))


def test_q_values_are_the_shared_head_at_those_cells_and_train_it():
    torch.manual_seed(0)
    model = HRMQNetwork(HRMConfig(**FIELDS))
    assert model.head.q_head.weight.shape == (1, 16)  # one value, shared by every cell
    tokens = grid_with_agent((2, 3), (1, 5))
    carry, q, _ = model(model.initial_carry(2), tokens)
    assert q.shape == (2, 4) and q.dtype == torch.float32
    index = model.head.readout_positions(tokens)
    expected = model.head.q_head(carry.z_H[torch.arange(2)[:, None], index].float()).squeeze(-1)
    torch.testing.assert_close(q, expected)
    q.sum().backward()
    assert model.head.q_head.weight.grad.abs().sum() > 0
    assert model.encoder.embed_tokens.weight.grad.abs().sum() > 0  # through the trunk too


def test_the_query_read_out_is_unchanged():
    torch.manual_seed(0)
    model = HRMQNetwork(HRMConfig(**{**FIELDS, "readout": "query"}))
    carry, q, _ = model(model.initial_carry(1), grid_with_agent((2, 3)))
    torch.testing.assert_close(q, model.head.q_head(carry.z_H[:, 0].float()))


@pytest.mark.parametrize("overrides, message", [
    ({"action_offsets": None}, "action_offsets"),
    ({"action_offsets": (UP, DOWN)}, "one \\(row, column\\) step per action"),
    ({"rope_anchor_token": None}, "rope_anchor_token"),
    ({"grid_shape": None, "pos_encodings": "rope"}, "grid_shape"),
])
def test_the_neighbors_read_out_is_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        HRMConfig(**{**FIELDS, **overrides})


def test_the_tokenizer_gives_the_envs_moves_as_row_column_steps():
    import gymnasium as gym

    import envs  # noqa: F401  (registers the environments)

    env = gym.make("DynamicMaze-v0")
    offsets = Tokenizer(env.observation_space).model_fields()["action_offsets"]
    assert offsets == (UP, RIGHT, DOWN, LEFT)  # actions 0..3: up (y-1), right (x+1), down (y+1), left (x-1)
    blocking = Tokenizer(env.observation_space).model_fields()["blocking_tokens"]
    assert blocking == (1, 3)  # WALL and DOOR_CLOSED: the tokens the env does not let the agent enter
    # and they are what a step does: each move lands where its offset says, unless that cell blocks
    env = gym.make("DynamicMaze-v0", change_prob=0.0)
    obs, info = env.reset(seed=3)
    x, y = info["agent_pos"]
    for action, (d_row, d_col) in enumerate(offsets):
        env.reset(seed=3)
        _, _, _, _, info = env.step(action)
        blocked = not PASSABLE[obs[y + d_row, x + d_col]]
        assert tuple(info["agent_pos"]) == ((x, y) if blocked else (x + d_col, y + d_row))


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the package default: rope2d, neighbours
        {"readout": "query"},
        {"pos_encodings": "rope", "readout": "query"},
        {"H_layers": 2, "L_layers": 2, "segments": 2},  # only the last H layer is restricted
        {"goal_embedding": True, "goal_token": 5},
        {"stay_on_blocked": True, "blocking_tokens": (1, 3)},
    ],
)
def test_q_values_gives_the_full_forward_q_values_and_gradients(overrides):
    """The DQN update's forward (q_values: last H update at the read-out positions only) is the same function."""
    torch.manual_seed(0)
    model = HRMQNetwork(HRMConfig(**{**FIELDS, **overrides}))
    tokens = grid_with_agent((2, 3), (0, 0), (4, 6), (1, 5))
    tokens[:, cell(3, 1)] = 5  # a goal cell for goal_embedding
    carry = HRMCarry(*(torch.randn(2, 4, 1 + ROWS * COLS, 16)))  # a carried state, different at every position

    _, q_full, _ = model(carry, tokens)
    grads_full = torch.autograd.grad(q_full.square().sum(), list(model.parameters()), allow_unused=True)
    q_only = model.q_values(carry, tokens)
    grads_only = torch.autograd.grad(q_only.square().sum(), list(model.parameters()), allow_unused=True)

    torch.testing.assert_close(q_only, q_full)
    assert q_only.requires_grad
    for (name, _), g_full, g_only in zip(model.named_parameters(), grads_full, grads_only):
        assert (g_full is None) == (g_only is None), name
        if g_full is not None:
            torch.testing.assert_close(g_only, g_full, msg=name)


def test_q_values_computes_no_final_state_so_it_cannot_trace():
    model = HRMQNetwork(HRMConfig(**FIELDS))
    with pytest.raises(TypeError, match="trace"):
        model.q_values(model.initial_carry(1), grid_with_agent((2, 3)), trace=True)
