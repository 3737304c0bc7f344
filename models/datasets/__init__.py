"""Datasets of respike: every source yields one clip layout, made by the live path's own kernels.

A sample is a :class:`ClipSample`: ``keyframes (S, 3, Hk, Wk)`` (RGB, ImageNet-normalised, as
:func:`~respike.models.ann.keyframe_tensor` makes them), ``steps (S*K, C, h, w)`` (the SNN inputs) and an integer
``label``; the default collate stacks samples into the ``(B, ...)`` batch that
:class:`~respike.models.hybrid.Clip` takes. The SNN inputs come from exactly the code a live
pipeline runs, so training and serving cannot drift apart:

- frames -> residual steps: :class:`respike.events.ResidualFrames` with ``stride = K`` at the
  model's SNN size (grey for 1 channel, RGB for 3); the key frame of segment ``s`` is frame
  ``s * K``, the frame the residual kernel keys on;
- frames -> event steps: :class:`respike.events.DvsEmulator` on each frame, each frame
  interval's events binned by :class:`respike.events.EventFrames` into one ``(2, h, w)`` step
  (one extra leading frame primes the emulator, as a running camera would have);
- recorded events -> event steps: :class:`respike.events.EventFrames` with ``S*K`` bins of
  ``time_bin_us`` each, the binning of the live ``snn`` node.

Sources (:func:`open_dataset` builds each from a SPEC string, see :func:`parse_data_spec`):

- :class:`SyntheticActions`: the synthetic generator (:mod:`respike.synthetic`), split by
  seed (:func:`~respike.synthetic.split_seed`) and by background family (training on
  ``TRAIN_BACKGROUNDS``, testing on ``HELDOUT_BACKGROUNDS``); cached to ``.npz`` on request;
- :class:`NMnist`: N-MNIST from a folder: ``train*.txt``/``test*.txt`` split files beside the
  samples (the ``nmnist_small`` layout) or ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``;
- :class:`DvsGesture`: tonic's layout (``ibmGestureTrain/userNN_light/<label>.npy``) or a folder
  of recordings with a ``labels.csv`` (``file,class_id,class_name``, ids 1-11);
- :class:`VideoFolder`: UCF-101 / HMDB-51 style class folders of videos with optional split
  files (``trainlist01.txt``/``testlist01.txt``, or ``*_test_split1.txt``);
- :class:`EventRecording`: any event array (from any event file) cut into consecutive clips.

Dataset folders and event files are read through :mod:`respike.recorders`: its
:mod:`~respike.recorders.datasets` is the one home of the layouts (listing, labels, splits, sensor
sizes, class names) and ``open_events`` reads every format; the datasets here add only the cut
into clips and the encoding.

Example::

    from respike.models import InputSpec
    from respike.models.datasets import SyntheticActions

    spec = InputSpec(snn_size=(64, 64), snn_input="residual", snn_channels=1)
    data = SyntheticActions(spec, split="train", clips=190, segments=4)
    sample = data[0]      # ClipSample(keyframes (4, 3, 112, 112), steps (16, 1, 64, 64), label)

One module per concern: :mod:`~respike.models.datasets.encoders` (the kernels' use),
:mod:`~respike.models.datasets.base` (:class:`ClipSample`, :class:`ClipDataset`),
:mod:`~respike.models.datasets.synthetic`, :mod:`~respike.models.datasets.recordings` (the event
datasets), :mod:`~respike.models.datasets.videos` and :mod:`~respike.models.datasets.specs` (SPEC
strings, :func:`open_dataset`); the public names are re-exported here.
"""

from __future__ import annotations

from respike.models.datasets.base import ClipDataset, ClipSample
from respike.models.datasets.encoders import EventEncoder, FrameEncoder, no_keyframes
from respike.models.datasets.recordings import DvsGesture, EventRecording, NMnist, shift_events
from respike.models.datasets.specs import (
    DATA_KINDS,
    DataOptions,
    DataSpec,
    open_dataset,
    parse_data_spec,
)
from respike.models.datasets.synthetic import (
    CACHE_VERSION,
    TRAINING_SCENE,
    DvsRandomisation,
    SyntheticActions,
    SyntheticOutliers,
    scene_from_dict,
    scene_to_dict,
)
from respike.models.datasets.videos import VideoFolder

__all__ = [
    "CACHE_VERSION",
    "DATA_KINDS",
    "TRAINING_SCENE",
    "ClipDataset",
    "ClipSample",
    "DataOptions",
    "DataSpec",
    "DvsGesture",
    "DvsRandomisation",
    "EventEncoder",
    "EventRecording",
    "FrameEncoder",
    "NMnist",
    "SyntheticActions",
    "SyntheticOutliers",
    "VideoFolder",
    "no_keyframes",
    "open_dataset",
    "parse_data_spec",
    "scene_from_dict",
    "scene_to_dict",
    "shift_events",
]
