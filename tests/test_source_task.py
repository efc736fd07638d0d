"""The pretraining source task: the same pictures, answers that never name a target label."""

import numpy as np

from minicnnrnn.tinyscenes import scenes, source_task


def test_pictures_and_labels_are_those_of_the_plain_generator():
    images, labels, answers = scenes.generate(40, scenes.SPLIT_SEEDS["pretrain"], 32, draw=source_task.render_source)
    plain_images, plain_labels = scenes.generate(40, scenes.SPLIT_SEEDS["pretrain"], 32)
    np.testing.assert_array_equal(images, plain_images)
    np.testing.assert_array_equal(labels, plain_labels)
    assert answers.shape == (40, source_task.A) and answers.dtype == np.uint8


def test_no_answer_is_a_target_label():
    assert not set(source_task.ATTRIBUTE_NAMES) & set(scenes.LABEL_NAMES)
    assert len(set(source_task.ATTRIBUTE_NAMES)) == source_task.A == 86


def test_answers_of_a_drawn_owner_map():
    """A rock in the top-left cell, a red target object filling the bottom row, the rest blue."""
    image = np.zeros((16, 16, 3), dtype=np.uint8) + np.array(source_task.PALETTE["blue"], dtype=np.uint8)
    image[12:] = source_task.PALETTE["red"]
    owners = np.zeros((32, 32), dtype=np.uint8)  # 2 drawing pixels per picture pixel, 4 per grid cell
    owners[0:2, 0:2] = source_task.OWNER_IDS["rock"]  # 4 of 16 drawing pixels of cell (0, 0)
    owners[24:, :] = source_task.OWNER_IDS["person"]  # every target label is the same "object" number
    got = dict(zip(source_task.ATTRIBUTE_NAMES, source_task.answers(image, owners)))
    assert got["rock"] == 1 and got["bush"] == 0 and got["frame"] == 0
    assert got["object_at_r0c0"] == 1 and got["object_at_r0c1"] == 0
    assert all(got[f"object_at_r{r}c{c}"] == 1 for r in (6, 7) for c in range(8))
    assert got["object_at_r5c0"] == 0
    assert got["colour_blue"] == 1 and got["colour_red"] == 1 and got["colour_green"] == 0
    # the rock's picture pixel is blue, but too few to count; the object row is red
    assert got["object_colour_red"] == 1 and got["object_colour_blue"] == 0


def test_every_kind_occurs_and_answers_vary():
    """On 300 pretrain pictures each answer is sometimes yes and sometimes no (none is constant)."""
    _, _, answers = scenes.generate(300, scenes.SPLIT_SEEDS["pretrain"], 32, draw=source_task.render_source)
    rate = answers.mean(axis=0)
    assert (rate > 0).all() and (rate < 1).all(), dict(zip(source_task.ATTRIBUTE_NAMES, rate))


def test_load_caches_answers_and_pictures(tmp_path):
    images, answers = source_task.load(30, 32, str(tmp_path))
    again_images, again_answers = source_task.load(30, 32, str(tmp_path))
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(answers, again_answers)
    plain, _ = scenes.load("pretrain", 30, 32, str(tmp_path))  # served from the cache the loader filled
    np.testing.assert_array_equal(images, plain)
