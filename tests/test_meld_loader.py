from emotion_agent.evals.meld import dialogues, load_split, parse_timestamp, previous_turns, stratified_sample


def test_timestamps_with_odd_formats():
    assert parse_timestamp("00:20:57,256") == 20 * 60 + 57.256
    assert parse_timestamp("0:20:57,25") == 20 * 60 + 57.25
    assert parse_timestamp("garbage") is None


def test_dev_split_counts_and_order(data_dir):
    utts = load_split("dev", data_dir)
    assert len(utts) == 1109
    assert len(dialogues(utts)) == 114
    counts = {}
    for u in utts:
        counts[u.emotion] = counts.get(u.emotion, 0) + 1
    assert counts == {"neutral": 470, "joy": 163, "surprise": 150, "anger": 153, "sadness": 111, "disgust": 22,
                      "fear": 40}
    first = utts[0]
    assert (first.dialogue_id, first.utterance_id, first.speaker) == (0, 0, "Phoebe")


def test_train_keys_unique_despite_duplicate_sr_no(data_dir):
    utts = load_split("train", data_dir)
    assert len({u.key for u in utts}) == len(utts) == 9989
    assert 60 not in dialogues(utts)


def test_previous_turns_stay_inside_the_dialogue(data_dir):
    utts = load_split("dev", data_dir)
    prev = previous_turns(utts, 2)
    for u in utts[:50]:
        assert all(p.dialogue_id == u.dialogue_id and p.position < u.position for p in prev[u.key])
        assert len(prev[u.key]) == min(2, u.position)


def test_stratified_sample_is_deterministic_and_covers_classes(data_dir):
    utts = load_split("dev", data_dir)
    a = stratified_sample(utts, 70)
    assert [u.key for u in a] == [u.key for u in stratified_sample(utts, 70)]
    assert len(a) == 70 and len({u.emotion for u in a}) == 7
