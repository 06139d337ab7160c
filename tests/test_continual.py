"""The class-incremental benchmark: its protocol, and a short run through real networks."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from neurox.bench import _continual as continual
from neurox.brain._maintenance import Hippocampus
from neurox.ext import digits


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    continual.add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(overrides)
    return args


def test_the_held_out_split_is_stratified_and_disjoint_from_what_is_learnt():
    data = digits()
    train, test = continual.split(data, 0.3, seed=0)
    assert not set(train) & set(test) and len(train) + len(test) == len(data.targets)
    for c in range(10):
        share = np.mean(data.targets[test] == c) / np.mean(data.targets == c)
        assert 0.9 < share < 1.1, (c, share)  # every class held out in the same proportion
    # the tasks' rows come from the training split only, two classes each, in order 0/1, 2/3, ...
    assert continual.TASKS == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    for classes in continual.TASKS:
        rows = continual.task_rows(data, train, classes)
        assert set(data.targets[rows]) == set(classes) and not set(rows) & set(test)
        packets = continual.epoch_packets(rows, 2, 8, np.random.default_rng(0))
        assert sorted(np.concatenate(packets)) == sorted(np.concatenate([rows, rows]))


def test_replays_memory_is_a_uniform_sample_of_distinct_rows():
    memory = continual.Reservoir(200, np.random.default_rng(0))
    for epoch in range(3):  # the same rows again do not crowd the memory
        memory.keep(np.arange(2000))
    assert len(memory.rows) == 200 and len(set(memory.rows)) == 200 and memory.seen == 2000
    assert 70 <= sum(1 for r in memory.rows if r < 1000) <= 130


def test_awake_replay_recalls_the_classes_the_stream_has_left_behind():
    hippocampus = Hippocampus(40, 1, np.random.default_rng(0))
    for task in ((0, 1), (2, 3)):
        labels = [task[k % 2] for k in range(100)]
        hippocampus.keep(np.asarray(labels, np.float32).reshape(-1, 1), labels)
        rows, _, targets = hippocampus.share(512)
        if task == (0, 1):  # nothing older kept yet: the classes of the moment, all of them
            assert sorted(set(targets)) == [0, 1] and len(targets) == 40
        else:  # 0/1 are kept beside 2/3 (balanced), but only they are recalled while 2/3 come
            assert hippocampus.classes() == {"0": 10, "1": 10, "2": 10, "3": 10}
            assert sorted(targets) == [0] * 10 + [1] * 10 and rows[:, 0].tolist() == targets
    # a stream where every class keeps coming leaves none behind: everything kept is recalled
    labels = [k % 4 for k in range(100)]
    hippocampus.keep(np.asarray(labels, np.float32).reshape(-1, 1), labels)
    assert sorted(set(hippocampus.share(512)[2])) == [0, 1, 2, 3] and len(hippocampus.share(512)[2]) == 40
    assert len(hippocampus.share(16)[2]) == 16


@pytest.mark.timeout(600)
def test_a_short_run_keeps_the_protocol_and_sleep_beats_no_sleep(tmp_path):
    args = _args(methods="none,neurox", epochs=3, batch=8, sleep_s=3.0, seed=0, plot=str(tmp_path))
    result = continual.run(args)
    for method in ("none", "neurox"):
        figures = result[method]
        # tasks in order: what each task sent to learn from is that task's two classes and nothing else
        assert figures["classes_sent"] == [list(t) for t in continual.TASKS]
        assert figures["rows_learnt"] == result["train_rows"]  # (run_method refuses any held-out row)
        assert len(figures["accuracy_after_each_task"]) == 5
    # after the first task, only its two classes can be right: the answers are over all ten outputs,
    # with no task label to narrow them (a task-incremental head would score far above 0.2 here)
    assert result["none"]["accuracy_after_each_task"][0] <= 0.25
    assert result["none"]["final_accuracy_per_task"][0] < 0.2  # forgotten without sleep
    assert result["neurox"]["dreamt"] > 0
    # awake replay: a stored sample beside each new one from the second task on (the memory is pushed
    # to MessengerIn every second, so a few of the first packets of task 2 may go without)
    learnt_after_first = 3 * (result["train_rows"] - len(continual.task_rows(digits(), continual.split(
        digits(), 0.3, 0)[0], (0, 1))))
    assert 0.8 * learnt_after_first <= result["neurox"]["recalled"] <= 3 * result["train_rows"]
    assert result["none"]["recalled"] == 0
    assert result["neurox_accuracy"] > result["none_accuracy"] + 0.2, result
    (png,) = result["plots"]  # --plot: the accuracy after each task, as a PNG
    with open(png, "rb") as figure:
        assert figure.read(8) == b"\x89PNG\r\n\x1a\n"
