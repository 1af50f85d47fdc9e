//! Reading every format version: a version-2 payload (version 1: its MLP-only variant) followed
//! by the trailing fields later versions appended, one per version. postcard encodes a struct as
//! its fields in order, so a version-`n` payload is exactly this sequence up to version `n`.

use serde::Deserialize;

use crate::model::{
    ClassifierLayer, DEFAULT_SDE_T0, FieldLayer, FieldNet, MAX_CLASSIFIER_LAYERS, MAX_FIELD_LAYERS,
    ModelFile, Normalization, SolverKind, SourceKind, TimeEmbedding,
};

/// Decodes the payload of a file of `version` (checked by the header), returning the model and
/// the bytes after it.
pub(crate) fn take(version: u16, payload: &[u8]) -> postcard::Result<(ModelFile<'_>, &[u8])> {
    let (mut m, mut rest): (ModelFile<'_>, &[u8]) = if version == 1 {
        let (v, r) = postcard::take_from_bytes::<ModelFileV1<'_>>(payload)?;
        (v.into(), r)
    } else {
        let (v, r) = postcard::take_from_bytes::<ModelFileV2<'_>>(payload)?;
        (v.into(), r)
    };
    if version >= 3 {
        (m.shift, rest) = postcard::take_from_bytes(rest)?;
    }
    if version >= 4 {
        (m.latent, rest) = postcard::take_from_bytes(rest)?;
    }
    if version >= 5 {
        (m.condition, rest) = postcard::take_from_bytes(rest)?;
    }
    if version >= 6 {
        (m.step_input, rest) = postcard::take_from_bytes(rest)?;
    }
    if version >= 7 {
        (m.diagonal, rest) = postcard::take_from_bytes(rest)?;
    }
    if version >= 8 {
        (m.sde_t0, rest) = postcard::take_from_bytes(rest)?;
    }
    Ok((m, rest))
}

/// Schema of format version 1 (the MLP field only); decoded and converted, never written.
#[derive(Deserialize)]
struct ModelFileV1<'a> {
    model_id: [u8; 16],
    classifier: heapless::Vec<ClassifierLayer, MAX_CLASSIFIER_LAYERS>,
    source: SourceKind,
    #[serde(borrow)]
    normalization: Normalization<'a>,
    time: TimeEmbedding,
    #[serde(borrow)]
    field: heapless::Vec<FieldLayer<'a>, MAX_FIELD_LAYERS>,
    solver: SolverKind,
    steps: u16,
}

impl<'a> From<ModelFileV1<'a>> for ModelFile<'a> {
    fn from(v: ModelFileV1<'a>) -> Self {
        Self {
            model_id: v.model_id,
            classifier: v.classifier,
            source: v.source,
            normalization: v.normalization,
            time: v.time,
            field: FieldNet::Mlp(v.field),
            solver: v.solver,
            steps: v.steps,
            shift: None,
            latent: None,
            condition: None,
            step_input: false,
            diagonal: None,
            sde_t0: DEFAULT_SDE_T0,
        }
    }
}

/// The fields every version from 2 on starts with (version 2 had no others).
#[derive(Deserialize)]
struct ModelFileV2<'a> {
    model_id: [u8; 16],
    classifier: heapless::Vec<ClassifierLayer, MAX_CLASSIFIER_LAYERS>,
    source: SourceKind,
    #[serde(borrow)]
    normalization: Normalization<'a>,
    time: TimeEmbedding,
    #[serde(borrow)]
    field: FieldNet<'a>,
    solver: SolverKind,
    steps: u16,
}

impl<'a> From<ModelFileV2<'a>> for ModelFile<'a> {
    fn from(v: ModelFileV2<'a>) -> Self {
        Self {
            model_id: v.model_id,
            classifier: v.classifier,
            source: v.source,
            normalization: v.normalization,
            time: v.time,
            field: v.field,
            solver: v.solver,
            steps: v.steps,
            shift: None,
            latent: None,
            condition: None,
            step_input: false,
            diagonal: None,
            sde_t0: DEFAULT_SDE_T0,
        }
    }
}
