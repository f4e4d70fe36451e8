"""Query/Retrieve information models and their levels (PS3.4 C.6, K.6): plain data.

For each model: the SOP classes for FIND/MOVE/GET, its levels from the top, and
per level the unique key and the required and common optional keys.  gdcmscu adds
the unique key of every level down to the requested one; so do we.
"""

from __future__ import annotations

from dicomscu.choices import ModelName

from dataclasses import dataclass

from dicomscu import uids


@dataclass(frozen=True)
class Level:
    name: str  # the Query/Retrieve Level value: PATIENT, STUDY, SERIES, IMAGE
    unique: str  # keyword of the unique key
    required: tuple[str, ...]  # required keys (R), besides the unique one
    optional: tuple[str, ...]  # commonly supported optional keys (O)


@dataclass(frozen=True)
class Model:
    name: ModelName
    title: str
    find: str
    move: str | None
    get: str | None
    levels: tuple[Level, ...]

    def level(self, name: str) -> Level:
        for level in self.levels:
            if level.name == name:
                return level
        names = ", ".join(level.name for level in self.levels)
        raise KeyError(f"the {self.title} model has no {name} level (levels: {names})")

    @property
    def default_level(self) -> str:
        """The level of a query that names none: STUDY, as the gdcmscu binary does (its manual says the
        model's top level); "" for a model without levels."""
        names = [level.name for level in self.levels]
        return "STUDY" if "STUDY" in names else names[0] if names else ""

    def path_to(self, name: str) -> tuple[Level, ...]:
        """Levels from the top down to `name`, inclusive."""
        index = [level.name for level in self.levels].index(self.level(name).name)
        return self.levels[: index + 1]


PATIENT = Level(
    "PATIENT", "PatientID", ("PatientName",),
    ("PatientBirthDate", "PatientSex", "IssuerOfPatientID", "OtherPatientIDsSequence",
     "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"),
)
STUDY = Level(
    "STUDY", "StudyInstanceUID", ("StudyDate", "StudyTime", "AccessionNumber", "StudyID"),
    ("StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy", "SOPClassesInStudy",
     "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
)
#: At the study level of the study root model the patient's keys are study keys (PS3.4 C.6.2.1.2).
STUDY_WITH_PATIENT = Level(
    "STUDY", "StudyInstanceUID", ("StudyDate", "StudyTime", "AccessionNumber", "StudyID", "PatientName", "PatientID"),
    STUDY.optional + ("PatientBirthDate", "PatientSex"),
)
SERIES = Level(
    "SERIES", "SeriesInstanceUID", ("Modality", "SeriesNumber"),
    ("SeriesDescription", "BodyPartExamined", "SeriesDate", "NumberOfSeriesRelatedInstances"),
)
IMAGE = Level(
    "IMAGE", "SOPInstanceUID", ("InstanceNumber",),
    ("SOPClassUID", "Rows", "Columns", "NumberOfFrames", "ContentDate"),
)

PATIENT_ROOT = Model(
    "patientroot", "Patient Root",
    uids.PATIENT_ROOT_FIND,
    uids.PATIENT_ROOT_MOVE,
    uids.PATIENT_ROOT_GET,
    (PATIENT, STUDY, SERIES, IMAGE),
)
STUDY_ROOT = Model(
    "studyroot", "Study Root",
    uids.STUDY_ROOT_FIND,
    uids.STUDY_ROOT_MOVE,
    uids.STUDY_ROOT_GET,
    (STUDY_WITH_PATIENT, SERIES, IMAGE),
)
WORKLIST = Model("worklist", "Modality Worklist", uids.MODALITY_WORKLIST_FIND, None, None, ())

MODELS: dict[str, Model] = {model.name: model for model in (PATIENT_ROOT, STUDY_ROOT, WORKLIST)}

#: Return keys a worklist query gets when the user names none (PS3.4 K.6.1.2.2).
WORKLIST_DEFAULT_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "RequestedProcedureID", "RequestedProcedureDescription", "StudyInstanceUID",
    "ScheduledProcedureStepSequence[0].Modality",
    "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
)

#: The same over DICOMweb, where a worklist query is a UPS-RS search (PS3.4 CC.2.5.1.2 return keys):
#: the Unified Procedure Step's own attributes, the workitem's UID first.
UPS_DEFAULT_KEYS = (
    "SOPInstanceUID", "PatientName", "PatientID", "ProcedureStepState", "ScheduledProcedureStepPriority",
    "ScheduledProcedureStepStartDateTime", "ExpectedCompletionDateTime", "ProcedureStepLabel", "WorklistLabel",
    "InputReadinessState", "ScheduledWorkitemCodeSequence[0].CodeMeaning",
    "ScheduledStationNameCodeSequence[0].CodeValue",
)


def help_text(model: Model) -> str:
    """``--queryhelp``: the keys each level of `model` supports."""
    lines = [f"{model.title} Query/Retrieve Information Model (C-FIND {model.find})"]
    if not model.levels:
        lines.append("  no levels; common keys (sequence items with [0]):")
        lines += [f"    {key}" for key in WORKLIST_DEFAULT_KEYS]
        lines.append("  with a DICOMweb URL, a UPS-RS search (/workitems); its common keys:")
        lines += [f"    {key}" for key in UPS_DEFAULT_KEYS]
        return "\n".join(lines) + "\n"
    for level in model.levels:
        lines.append(f"  --{level.name.lower()}  (0008,0052) Query/Retrieve Level = {level.name}")
        lines.append(f"    unique:   {_describe(level.unique)}")
        lines += [f"    required: {_describe(key)}" for key in level.required]
        lines += [f"    optional: {_describe(key)}" for key in level.optional]
    lines.append("Keys: -k GGGG,EEEE[=VALUE] or -k Keyword[=VALUE]; without a value, a key to return.")
    lines.append("Unique keys of every level down to the one queried are added as return keys.")
    return "\n".join(lines) + "\n"


def _describe(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {dictionary_VR(tag)} {keyword}"


def model_named(name: str | None) -> Model:
    """The query model called `name` (patientroot without one); a usage error naming the choices otherwise."""
    from dicomscu.errors import UsageError

    try:
        return MODELS[name or "patientroot"]
    except KeyError:
        raise UsageError(f"no query model {name!r}: choose among {', '.join(sorted(MODELS))}", option="model") from None
