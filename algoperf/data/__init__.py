"""Datasets on disk: TFRecord shards read and written without TensorFlow, and the one
``prepare(data_dir, source)`` contract of ``algoperf data prepare``."""
