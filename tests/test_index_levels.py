"""The index's patient, study and series tables stay equal to what its instances make of them, whatever the writes.

The patient, study and series rows (counts, modalities, SOP classes, a file of theirs, their attributes) are kept by
triggers as instances are added, replaced (sent again, under another series or study) and removed.  A model
in Python, fed the same random writes, says what they must be after each.
"""

from __future__ import annotations

import random

from pydicom.dataset import Dataset

from dicomscu.server.index import COLUMNS, Index

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"


def _instance(pick: random.Random, sop: int) -> dict[str, str]:
    study = pick.randrange(4)
    row = {column: "" for column in COLUMNS}
    row.update(sop_uid=f"1.9.{sop}", study_uid=f"1.8.{study}", series_uid=f"1.7.{pick.randrange(6)}",
               patient_id=pick.choice(["P0", "P1", "P2"]), patient_name=pick.choice(["DOE^A", "DOE^B"]),
               study_description=pick.choice(["CHEST", "HEAD", ""]), modality=pick.choice(["CT", "MR", "", "OT"]),
               sop_class=pick.choice([CT, MR, ""]), path=f"f/{sop}-{pick.randrange(10**6)}.dcm")
    return row


class _Model:
    """What the level tables must hold: instances in the order stored; a study's (series') attributes are
    those of the instance stored last in it, kept while any of its instances remains."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, str]] = {}
        self.patient_values: dict[str, dict[str, str]] = {}
        self.study_values: dict[str, dict[str, str]] = {}
        self.series_values: dict[str, dict[str, str]] = {}

    def add(self, row: dict[str, str]) -> None:
        self.remove(row["sop_uid"])
        self.instances[row["sop_uid"]] = row
        self.patient_values[row["patient_id"]] = {"patient_name": row["patient_name"]}
        self.study_values[row["study_uid"]] = {k: row[k] for k in ("patient_id", "patient_name", "study_description")}
        self.series_values[row["series_uid"]] = {"study_uid": row["study_uid"], "modality": row["modality"]}

    def remove(self, sop: str) -> None:
        row = self.instances.pop(sop, None)
        if row is None:
            return
        if not any(r["study_uid"] == row["study_uid"] for r in self.instances.values()):
            del self.study_values[row["study_uid"]]
        if not any(r["patient_id"] == row["patient_id"] for r in self.instances.values()):
            del self.patient_values[row["patient_id"]]
        if not any(r["series_uid"] == row["series_uid"] for r in self.instances.values()):
            del self.series_values[row["series_uid"]]


def _check(index: Index, model: _Model) -> None:
    db = index._db
    series = {uid: (study, modality, count, set(filter(None, classes.split(","))), path) for
              uid, study, modality, count, classes, path in
              db.execute("SELECT series_uid, study_uid, modality, series_instances, sop_classes, path FROM series")}
    assert set(series) == set(model.series_values)
    for uid, (study, modality, count, classes, path) in series.items():
        members = [r for r in model.instances.values() if r["series_uid"] == uid]
        assert count == len(members) and classes == {r["sop_class"] for r in members} - {""}, uid
        assert {"study_uid": study, "modality": modality} == model.series_values[uid]
        assert path in {r["path"] for r in members}
    studies = {row[0]: row[1:] for row in db.execute(
        "SELECT study_uid, patient_id, patient_name, study_description, study_series, study_instances, "
        "modalities, sop_classes, path FROM studies")}
    assert set(studies) == set(model.study_values)
    for uid, (patient, name, description, series_count, count, modalities, classes, path) in studies.items():
        members = [r for r in model.instances.values() if r["study_uid"] == uid]
        assert {"patient_id": patient, "patient_name": name, "study_description": description} == model.study_values[uid]
        assert count == len(members), uid
        in_study = [s for s, values in model.series_values.items() if values["study_uid"] == uid]
        assert series_count == len(in_study), uid
        assert set(filter(None, modalities.split(","))) == {model.series_values[s]["modality"] for s in in_study} - {""}
        assert set(filter(None, classes.split(","))) == {
            r["sop_class"] for r in model.instances.values() if r["series_uid"] in in_study} - {""}
        assert path in {r["path"] for r in members}
    patients = {row[0]: row[1:] for row in db.execute(
        "SELECT patient_id, patient_name, patient_studies, patient_series, patient_instances, path FROM patients")}
    assert set(patients) == set(model.patient_values)
    for uid, (name, study_count, series_count, count, path) in patients.items():
        members = [r for r in model.instances.values() if r["patient_id"] == uid]
        their_studies = [s for s, values in model.study_values.items() if values["patient_id"] == uid]
        assert {"patient_name": name} == model.patient_values[uid] and count == len(members), uid
        assert study_count == len(their_studies), uid
        assert series_count == sum(values["study_uid"] in their_studies for values in model.series_values.values())
        assert path in {r["path"] for r in members}


def test_patient_study_and_series_rows_follow_every_add_replace_and_removal(tmp_path):
    pick = random.Random(5)
    index = Index(str(tmp_path / "index.sqlite"))
    model = _Model()
    try:
        for step in range(600):
            action = pick.random()
            if action < 0.55:
                row = _instance(pick, pick.randrange(40))
                index.add(row)
                model.add(row)
            elif action < 0.75:  # several at once, as group commit writes them (the same one twice, too)
                rows = [_instance(pick, pick.randrange(40)) for _ in range(pick.randrange(2, 6))]
                index.write_rows(rows)
                for row in rows:
                    model.add(row)
            elif model.instances:
                sop = pick.choice(sorted(model.instances))
                index._db.execute("DELETE FROM instances WHERE sop_uid = ?", (sop,))
                model.remove(sop)
            _check(index, model)
    finally:
        index.close()


def test_a_study_answers_with_its_last_instance_values_and_retrieves_all_of_its_instances(tmp_path):
    """Instances of one study that disagree on a study attribute (a correction sent again): the study is
    answered, and matched, with the values of the instance stored last; retrieving it sends every instance."""
    index = Index(str(tmp_path / "index.sqlite"))
    try:
        pick = random.Random(1)
        first, second = _instance(pick, 1), _instance(pick, 2)
        first.update(study_uid="1.8.0", series_uid="1.7.0", study_description="CHEST WRONG", patient_name="DOE^A")
        second.update(study_uid="1.8.0", series_uid="1.7.1", study_description="CHEST", patient_name="DOE^A")
        index.add(first)
        index.add(second)
        (match,) = index.query(_study("CHEST"), "STUDY")
        assert match.identifier.StudyDescription == "CHEST" and match.identifier.NumberOfStudyRelatedInstances == 2
        assert sorted(row["sop_uid"] for row in match.instances()) == ["1.9.1", "1.9.2"]
        assert list(index.query(_study("CHEST WRONG"), "STUDY")) == []
        first["study_description"] = "CHEST WRONG AGAIN"  # sent again: now it is the last stored
        index.add(first)
        (match,) = index.query(_study("CHEST WRONG AGAIN"), "STUDY")
        assert match.identifier.NumberOfStudyRelatedInstances == 2
    finally:
        index.close()


def _study(description: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyDescription = description
    query.NumberOfStudyRelatedInstances = ""
    return query


#: Per level: the model, the unique key, and the keys asked (every attribute the index answers at that level or
#: above, and the level's computed keys).
LEVEL_QUERIES = {
    "patient": ("patientroot", "PatientID", ["PatientName", "PatientBirthDate", "PatientSex",
                                             "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                                             "NumberOfPatientRelatedInstances"]),
    "study": ("studyroot", "StudyInstanceUID", ["PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                                                "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
                                                "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy",
                                                "SOPClassesInStudy", "NumberOfStudyRelatedSeries",
                                                "NumberOfStudyRelatedInstances"]),
    "series": ("studyroot", "SeriesInstanceUID", ["StudyInstanceUID", "PatientID", "StudyDate", "Modality",
                                                  "SeriesNumber", "SeriesDescription",
                                                  "NumberOfSeriesRelatedInstances"]),
    "image": ("studyroot", "SOPInstanceUID", ["StudyInstanceUID", "SeriesInstanceUID", "PatientName", "Modality",
                                              "SOPClassUID", "InstanceNumber", "Rows", "Columns"]),
}
_COUNTS = {"NumberOfPatientRelatedStudies": ("PatientID", "StudyInstanceUID"),
           "NumberOfPatientRelatedSeries": ("PatientID", "SeriesInstanceUID"),
           "NumberOfPatientRelatedInstances": ("PatientID", "SOPInstanceUID"),
           "NumberOfStudyRelatedSeries": ("StudyInstanceUID", "SeriesInstanceUID"),
           "NumberOfStudyRelatedInstances": ("StudyInstanceUID", "SOPInstanceUID"),
           "NumberOfSeriesRelatedInstances": ("SeriesInstanceUID", "SOPInstanceUID")}


def test_every_level_answers_with_the_stored_instances_values_element_by_element(tmp_path):
    """C-FINDs at each level over stored sample instances: every answer's attributes equal those of the
    instances under it as pydicom reads the files sent, its counts and study sets are counted from them, and
    every entity of the level is answered once."""
    import pydicom

    import dicomscu
    from dicomscu.sample import SampleSpec, write_sample

    files = write_sample(tmp_path / "sent", SampleSpec(patients=2, studies=2, series=2, images=3, matrix=8,
                                                       seed=4)).files
    sent = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    with dicomscu.serve(tmp_path / "storage") as served:
        assert dicomscu.store(served.peer, [str(path) for path in files]).stored == len(files)
        for level, (model, unique, keys) in LEVEL_QUERIES.items():
            answers: list = []
            query = dicomscu.build_query(model, level, [unique, *keys])
            assert dicomscu.find(served.peer, query, on_answer=answers.append).ok
            assert sorted(str(a.get(unique)) for a in answers) == sorted({str(d.get(unique)) for d in sent}), level
            for answer in answers:
                under = [d for d in sent if str(d.get(unique)) == str(answer.get(unique))]
                for keyword in keys:
                    got = answer.get(keyword)
                    if keyword in _COUNTS:
                        owner, counted = _COUNTS[keyword]
                        expected = len({str(d.get(counted)) for d in sent if str(d.get(owner)) == str(answer.get(owner))})
                        assert int(got) == expected, (level, keyword)
                    elif keyword in ("ModalitiesInStudy", "SOPClassesInStudy"):
                        source = "Modality" if keyword == "ModalitiesInStudy" else "SOPClassUID"
                        assert _values(got) == sorted({str(d.get(source)) for d in under}), (level, keyword)
                    else:
                        assert str(got if got is not None else "") == str(under[0].get(keyword, "") or ""), (level, keyword)


def _values(value) -> list[str]:
    return [] if value is None else [str(value)] if isinstance(value, str) else sorted(str(v) for v in value)
