"""The lessons' own experiments: what a lesson runs to make its point, beside the lesson.

A trainer holds a model's recipe, training, saving and loading; an experiment that only one lesson
runs (lesson 08's ingredient ablation, lesson 09's per-speech measures, lesson 10's comparison of
samplers) lives here, in ``lessonNN.py``, above the trainers it uses.
"""
