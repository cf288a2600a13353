"""The dialogue GRU: speaker cues, a residual start at the expert, and online mode blind to the future."""

import numpy as np
import torch

from emotion_agent.tools.dialogue_model import CUE_DIM, DialogueGRU, pad_dialogues, speaker_cues


def _dialogue(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 7)).astype(np.float32)
    speakers = ["A", "B", "A", "C", "B"][:n]
    return {"features": rng.normal(size=(n, 16)).astype(np.float32), "logits": logits,
            "cues": speaker_cues(speakers, logits)}


def test_speaker_cues_mark_same_speaker_first_turn_and_carry_over():
    d = _dialogue(5)
    cues = d["cues"]
    assert cues.shape == (5, CUE_DIM)
    assert cues[0, 1] == 1.0 and cues[1, 1] == 1.0 and cues[2, 1] == 0.0  # A's second turn is not her first
    assert cues[2, 0] == 0.0  # B spoke before A's second turn
    own_previous = cues[2, 9:]
    assert np.isclose(own_previous.sum(), 1.0) and own_previous.argmax() == d["logits"][0].argmax()


def test_untrained_model_returns_the_expert_and_online_ignores_future_turns():
    torch.manual_seed(0)
    online = DialogueGRU(feat_dim=16, mode="online").eval()
    a, b = _dialogue(5, seed=1), _dialogue(5, seed=1)
    batch = pad_dialogues([a])
    out = online(batch["feats"], batch["logits"], batch["cues"], batch["lengths"])
    assert torch.allclose(out, batch["logits"])  # zero-initialised residual head
    torch.nn.init.normal_(online.head.weight)
    b["features"][4] += 5.0  # change only the last turn
    x, y = pad_dialogues([a]), pad_dialogues([b])
    ox = online(x["feats"], x["logits"], x["cues"], x["lengths"])
    oy = online(y["feats"], y["logits"], y["cues"], y["lengths"])
    assert torch.allclose(ox[0, :4], oy[0, :4]) and not torch.allclose(ox[0, 4], oy[0, 4])
    offline = DialogueGRU(feat_dim=16, mode="offline").eval()
    torch.nn.init.normal_(offline.head.weight)
    fx = offline(x["feats"], x["logits"], x["cues"], x["lengths"])
    fy = offline(y["feats"], y["logits"], y["cues"], y["lengths"])
    assert not torch.allclose(fx[0, :4], fy[0, :4])  # offline sees the future
