"""A detector's maps and few-shot training are declared once: in its spec's DetectorCapabilities.

``Detector.supports_maps`` / ``learns_from_anomalies`` and the pipeline's ``DetectorTraits``
read that one value, so the spec, the object and the pipeline cannot disagree.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from pyimgano import Detector, DetectorCapabilities, create_detector
from pyimgano.pipeline import DetectorTraits, detector_traits
from pyimgano.plugins import get_registry


def _registered_detectors():
    registry = get_registry()
    return [(name, spec, registry.load_factory("detector", name)) for name, (spec, _) in
            registry.components("detector").items()]


def test_every_registered_detector_reads_its_maps_and_anomaly_learning_from_its_spec():
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no first-party class declares them itself
        detectors = _registered_detectors()
    for name, spec, cls in detectors:
        assert isinstance(cls, type) and issubclass(cls, Detector), name
        for attr in ("supports_maps", "learns_from_anomalies"):  # no class shadows the one value
            assert getattr(cls, attr) is getattr(Detector, attr), f"{name}: {cls.__qualname__}.{attr}"
        detector = cls.__new__(cls)  # as the class, built without the registry, knows itself
        assert detector.capabilities is spec.capabilities, name
        assert detector.supports_maps is spec.capabilities.pixel_maps, name
        assert detector.learns_from_anomalies is spec.capabilities.learns_from_anomalies, name
        traits = detector_traits(detector)
        assert dataclasses.replace(traits, name=name) == DetectorTraits.of_spec(name, spec), name
        seen.add((spec.capabilities.pixel_maps, spec.capabilities.learns_from_anomalies))
    assert {(True, False), (False, False), (True, True)} <= seen  # both values of each are covered


def test_narrowing_an_instance_changes_what_it_does_and_what_the_pipeline_sees():
    detector = create_detector("faiss:patchcore")
    assert detector.supports_maps and detector_traits(detector).pixel_maps
    detector.capabilities = detector.capabilities.model_copy(update={"pixel_maps": False})
    assert not detector.supports_maps and not detector_traits(detector).pixel_maps
    assert get_registry().resolve("detector", "faiss:patchcore")[0].capabilities.pixel_maps  # the spec is untouched
    with pytest.raises(NotImplementedError, match="does not produce anomaly maps"):
        detector.predict_anomaly_map([np.zeros((8, 8, 3), np.uint8)])


class _Toy(Detector):
    def _fit(self, images):
        pass

    def _score(self, images):
        return np.zeros(len(images)), None


def test_an_unregistered_detector_has_the_default_capabilities_or_those_it_is_given():
    detector = _Toy()
    assert detector.capabilities == DetectorCapabilities()
    assert detector.supports_maps and not detector.learns_from_anomalies
    detector.capabilities = {"pixel_maps": False}
    assert detector_traits(detector).pixel_maps is False is detector.supports_maps


def test_the_old_class_attributes_warn_and_are_reconciled_into_the_capabilities():
    with pytest.warns(DeprecationWarning, match="declaring supports_maps, learns_from_anomalies as class attributes is deprecated"):
        class OldToy(_Toy):
            supports_maps = False
            learns_from_anomalies = True

    assert OldToy.supports_maps is Detector.supports_maps  # the attribute became the capabilities
    old = OldToy()
    assert (old.capabilities.pixel_maps, old.capabilities.learns_from_anomalies) == (False, True)
    assert detector_traits(old).learns_from_anomalies and not detector_traits(old).pixel_maps

    with pytest.warns(DeprecationWarning):  # under a spec, an old attribute can only narrow it (as before)
        class OldPatchcore(type(create_detector("faiss:patchcore"))):
            component = "faiss:patchcore"
            supports_maps = False
            learns_from_anomalies = True

    caps = OldPatchcore().capabilities
    assert (caps.pixel_maps, caps.learns_from_anomalies) == (False, False)

    detector = _Toy()
    with pytest.warns(DeprecationWarning, match="setting supports_maps"):
        detector.supports_maps = False
    assert detector.capabilities.pixel_maps is False is detector_traits(detector).pixel_maps
