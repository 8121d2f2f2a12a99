//! FHIR R4 JSON wire types, as far as slot feeds use them (ANS SAS IG and SMART Scheduling
//! Links). Borrowed from the input where possible, lenient on shape (FHIR `0..*` elements
//! given as one object are accepted), unknown elements ignored.
//!
//! [`Resource`] is the union of the elements of Slot, Schedule, Practitioner,
//! PractitionerRole, Location, HealthcareService and Organization: one pass reads any of
//! them, `resourceType` says which.

use super::fhir::{
    EXT_BOOKING_DEEP_LINK, EXT_BOOKING_PHONE, EXT_SLOT_CAPACITY, EXT_SLOT_SERVICE_TYPE,
    EXT_SURNUMERAIRE,
};
use crate::domain::slot::{Audience, AudienceSet, Modality};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A string borrowed from the input when it has no escapes (serde only borrows a bare
/// `Cow<str>` field, not one inside `Option` or `Vec`: this newtype does it everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Any FHIR resource of a slot feed.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource<'a> {
    #[serde(borrow)]
    pub resource_type: Option<Str<'a>>,
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    #[serde(borrow)]
    pub meta: Option<Meta<'a>>,
    #[serde(borrow)]
    pub extension: Vec<Extension<'a>>,
    #[serde(borrow)]
    pub contained: Vec<Resource<'a>>,
    // Slot
    #[serde(borrow)]
    pub schedule: Option<Reference<'a>>,
    #[serde(borrow)]
    pub status: Option<Str<'a>>,
    #[serde(borrow)]
    pub start: Option<Str<'a>>,
    #[serde(borrow)]
    pub end: Option<Str<'a>>,
    #[serde(borrow)]
    pub comment: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub service_type: Vec<CodeableConcept<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub specialty: Vec<CodeableConcept<'a>>,
    #[serde(borrow)]
    pub appointment_type: Option<CodeableConcept<'a>>,
    // Schedule
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub actor: Vec<Reference<'a>>,
    // PractitionerRole
    #[serde(borrow)]
    pub practitioner: Option<Reference<'a>>,
    #[serde(borrow)]
    pub organization: Option<Reference<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub location: Vec<Reference<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub code: Vec<CodeableConcept<'a>>,
    // Location, Organization, Practitioner, PractitionerRole
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub identifier: Vec<Identifier<'a>>,
    #[serde(borrow)]
    pub name: Option<Name<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub telecom: Vec<ContactPoint<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub address: Vec<Address<'a>>,
    pub position: Option<Position>,
    #[serde(borrow)]
    pub managing_organization: Option<Reference<'a>>,
    // HealthcareService
    #[serde(borrow)]
    pub provided_by: Option<Reference<'a>>,
}

/// A Slot: only the elements slot normalisation reads, in slim types (codes without
/// system/display, references without identifier…), so that the hot path fills, moves and
/// drops small structs. Elements left out are skipped by the parser.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SlotResource<'a> {
    #[serde(borrow)]
    pub resource_type: Option<Str<'a>>,
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    #[serde(borrow)]
    pub meta: Option<SlotMeta<'a>>,
    #[serde(borrow)]
    pub extension: Vec<SlotExtension<'a>>,
    #[serde(borrow)]
    pub schedule: Option<SlotReference<'a>>,
    #[serde(borrow)]
    pub status: Option<Str<'a>>,
    #[serde(borrow)]
    pub start: Option<Str<'a>>,
    #[serde(borrow)]
    pub end: Option<Str<'a>>,
    #[serde(borrow)]
    pub comment: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub service_type: Vec<SlotConcept<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub specialty: Vec<SlotConcept<'a>>,
    #[serde(borrow)]
    pub appointment_type: Option<SlotConcept<'a>>,
}

/// `Slot.meta`: the audience codes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlotMeta<'a> {
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub security: Vec<SlotCoding<'a>>,
}

/// A coding as a slot uses it: the code only.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlotCoding<'a> {
    #[serde(borrow)]
    pub code: Option<Str<'a>>,
}

/// A CodeableConcept as a slot uses it: codes, and extensions (the R5 serviceType link).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlotConcept<'a> {
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub coding: Vec<SlotCoding<'a>>,
    #[serde(borrow)]
    pub extension: Vec<SlotExtension<'a>>,
}

/// A literal reference only.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlotReference<'a> {
    #[serde(borrow)]
    pub reference: Option<Str<'a>>,
}

/// An extension as a slot uses it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SlotExtension<'a> {
    #[serde(borrow)]
    pub url: Option<Str<'a>>,
    #[serde(borrow)]
    pub value_url: Option<Str<'a>>,
    #[serde(borrow)]
    pub value_string: Option<Str<'a>>,
    pub value_integer: Option<i64>,
    pub value_boolean: Option<bool>,
    #[serde(borrow)]
    pub value_reference: Option<SlotReference<'a>>,
}

impl<'a> From<Coding<'a>> for SlotCoding<'a> {
    fn from(c: Coding<'a>) -> Self {
        Self { code: c.code }
    }
}

impl<'a> From<Reference<'a>> for SlotReference<'a> {
    fn from(r: Reference<'a>) -> Self {
        Self {
            reference: r.reference,
        }
    }
}

impl<'a> From<Extension<'a>> for SlotExtension<'a> {
    fn from(e: Extension<'a>) -> Self {
        Self {
            url: e.url,
            value_url: e.value_url,
            value_string: e.value_string,
            value_integer: e.value_integer,
            value_boolean: e.value_boolean,
            value_reference: e.value_reference.map(Into::into),
        }
    }
}

impl<'a> From<CodeableConcept<'a>> for SlotConcept<'a> {
    fn from(c: CodeableConcept<'a>) -> Self {
        Self {
            coding: c.coding.into_iter().map(Into::into).collect(),
            extension: c.extension.into_iter().map(Into::into).collect(),
        }
    }
}

impl<'a> From<Resource<'a>> for SlotResource<'a> {
    fn from(r: Resource<'a>) -> Self {
        Self {
            resource_type: r.resource_type,
            id: r.id,
            meta: r.meta.map(|m| SlotMeta {
                security: m.security.into_iter().map(Into::into).collect(),
            }),
            extension: r.extension.into_iter().map(Into::into).collect(),
            schedule: r.schedule.map(Into::into),
            status: r.status,
            start: r.start,
            end: r.end,
            comment: r.comment,
            service_type: r.service_type.into_iter().map(Into::into).collect(),
            specialty: r.specialty.into_iter().map(Into::into).collect(),
            appointment_type: r.appointment_type.map(Into::into),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Slot summaries: a Slot reduced, while it is read, to what slot normalisation uses
// ---------------------------------------------------------------------------------------------

/// A Slot reduced to what slot normalisation reads (rules of [`super::fhir`]): the lists of
/// the resource (serviceType, specialty, codings, extensions, meta.security) folded into a
/// few values, so a summary holds no heap allocation unless a string had escapes or a
/// security code is unknown — cheap to hand from a reading thread to the normaliser (handing
/// over the `SlotResource`s themselves, lists and all, halved the two-core throughput).
///
/// Made from a [`SlotResource`] (`From`) with the folding methods below.
#[derive(Debug, Default, PartialEq)]
pub struct SlotSummary<'a> {
    pub id: Option<Str<'a>>,
    /// `schedule.reference`.
    pub schedule: Option<Str<'a>>,
    pub status: Option<Str<'a>>,
    pub start: Option<Str<'a>>,
    pub end: Option<Str<'a>>,
    pub comment: Option<Str<'a>>,
    /// serviceType: first AMB/HH/VR code, first R5 HealthcareService link.
    pub service_type: ConceptFold<'a>,
    /// specialty: first code.
    pub specialty: Option<Str<'a>>,
    /// appointmentType: first code.
    pub appointment_type: Option<Str<'a>>,
    /// `meta.security`, when `meta` is given.
    pub security: SecurityFold<'a>,
    /// The slot's own extensions.
    pub extensions: ExtensionFold<'a>,
}

/// CodeableConcepts folded: the first ActCode modality, the first non-blank code, and the
/// reference of the first R5 `extension-Slot.serviceType` (`Some(None)`: the extension is
/// there without a `valueReference.reference`).
#[derive(Debug, Default, PartialEq)]
pub struct ConceptFold<'a> {
    /// Modality of the first `AMB`/`HH`/`VR` code (matched exactly, untrimmed).
    pub modality: Option<Modality>,
    /// The first code that is not blank (untrimmed: readers trim it).
    pub code: Option<Str<'a>>,
    /// The first R5 HealthcareService link: `Some(None)` when it has no reference.
    pub service: Option<Option<Str<'a>>>,
}

impl<'a> ConceptFold<'a> {
    fn coding(&mut self, c: SlotCoding<'a>) {
        let Some(code) = c.code else { return };
        if self.modality.is_none() {
            self.modality = match &*code {
                "AMB" => Some(Modality::Ambulatory),
                "HH" => Some(Modality::HomeVisit),
                "VR" => Some(Modality::Teleconsultation),
                _ => None,
            };
        }
        if self.code.is_none() && !code.trim().is_empty() {
            self.code = Some(code);
        }
    }

    fn extension(&mut self, e: SlotExtension<'a>) {
        if self.service.is_none() && e.url.as_deref() == Some(EXT_SLOT_SERVICE_TYPE) {
            self.service = Some(e.value_reference.and_then(|r| r.reference));
        }
    }

    /// Folds a later concept of the same list into this one (first values win).
    fn concept(&mut self, c: ConceptFold<'a>) {
        if self.modality.is_none() {
            self.modality = c.modality;
        }
        if self.code.is_none() {
            self.code = c.code;
        }
        if self.service.is_none() {
            self.service = c.service;
        }
    }

    fn from_concept(c: SlotConcept<'a>) -> Self {
        let mut f = Self::default();
        c.coding.into_iter().for_each(|x| f.coding(x));
        c.extension.into_iter().for_each(|x| f.extension(x));
        f
    }
}

/// `meta.security` folded: the audiences, and the codes that are none (in order; `None` for
/// a coding without code).
#[derive(Debug, Default, PartialEq)]
pub struct SecurityFold<'a> {
    /// The TRE_R314 codes read.
    pub audience: AudienceSet,
    /// The other codings' codes, in order (reported as warnings); empty in the usual case,
    /// so nothing is allocated.
    pub unknown: Vec<Option<Str<'a>>>,
}

impl<'a> SecurityFold<'a> {
    fn coding(&mut self, c: SlotCoding<'a>) {
        match c.code.as_deref().and_then(Audience::parse) {
            Some(a) => self.audience.insert(a),
            None => self.unknown.push(c.code),
        }
    }
}

/// A Slot's extensions folded, the last valid value of each winning: booking link
/// (`valueUrl`, else `valueString`, not blank), booking phone (`valueString`, not blank),
/// capacity (a `valueInteger` in 1..=u32::MAX; the others counted), surnuméraire.
#[derive(Debug, Default, PartialEq)]
pub struct ExtensionFold<'a> {
    /// SMART `booking-deep-link`, untrimmed.
    pub booking_url: Option<Str<'a>>,
    /// SMART `booking-phone` as written (normalised by the emitter, once per value).
    pub booking_phone: Option<Str<'a>>,
    /// SMART `slot-capacity`.
    pub capacity: Option<u32>,
    /// `slot-capacity` extensions without a usable value (one warning each).
    pub bad_capacity: u32,
    /// sasnp's surnuméraire extension (`valueBoolean`, absent = false).
    pub surnumeraire: Option<bool>,
}

impl<'a> ExtensionFold<'a> {
    fn extension(&mut self, e: SlotExtension<'a>) {
        match e.url.as_deref() {
            Some(EXT_BOOKING_DEEP_LINK) => {
                let u = e.value_url.or(e.value_string);
                if u.as_deref().is_some_and(|u| !u.trim().is_empty()) {
                    self.booking_url = u;
                }
            }
            Some(EXT_BOOKING_PHONE) => {
                if let Some(raw) = e.value_string.filter(|r| !r.trim().is_empty()) {
                    self.booking_phone = Some(raw);
                }
            }
            Some(EXT_SLOT_CAPACITY) => match e.value_integer {
                Some(n) if n >= 1 && n <= i64::from(u32::MAX) => self.capacity = Some(n as u32),
                _ => self.bad_capacity += 1,
            },
            Some(EXT_SURNUMERAIRE) => self.surnumeraire = Some(e.value_boolean.unwrap_or(false)),
            _ => {}
        }
    }
}

impl<'a> From<SlotResource<'a>> for SlotSummary<'a> {
    fn from(r: SlotResource<'a>) -> Self {
        let mut service_type = ConceptFold::default();
        for c in r.service_type {
            service_type.concept(ConceptFold::from_concept(c));
        }
        let mut specialty = ConceptFold::default();
        for c in r.specialty {
            specialty.concept(ConceptFold::from_concept(c));
        }
        let mut security = SecurityFold::default();
        for c in r.meta.into_iter().flat_map(|m| m.security) {
            security.coding(c);
        }
        let mut extensions = ExtensionFold::default();
        for e in r.extension {
            extensions.extension(e);
        }
        Self {
            id: r.id,
            schedule: r.schedule.and_then(|s| s.reference),
            status: r.status,
            start: r.start,
            end: r.end,
            comment: r.comment,
            service_type,
            specialty: specialty.code,
            appointment_type: r
                .appointment_type
                .and_then(|c| ConceptFold::from_concept(c).code),
            security,
            extensions,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Meta<'a> {
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub security: Vec<Coding<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub profile: Vec<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Extension<'a> {
    #[serde(borrow)]
    pub url: Option<Str<'a>>,
    #[serde(borrow)]
    pub value_url: Option<Str<'a>>,
    #[serde(borrow)]
    pub value_string: Option<Str<'a>>,
    #[serde(borrow)]
    pub value_code: Option<Str<'a>>,
    pub value_integer: Option<i64>,
    pub value_boolean: Option<bool>,
    #[serde(borrow)]
    pub value_reference: Option<Reference<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CodeableConcept<'a> {
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub coding: Vec<Coding<'a>>,
    #[serde(borrow)]
    pub text: Option<Str<'a>>,
    #[serde(borrow)]
    pub extension: Vec<Extension<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Coding<'a> {
    #[serde(borrow)]
    pub system: Option<Str<'a>>,
    #[serde(borrow)]
    pub code: Option<Str<'a>>,
    #[serde(borrow)]
    pub display: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Reference<'a> {
    #[serde(borrow)]
    pub reference: Option<Str<'a>>,
    #[serde(borrow)]
    pub display: Option<Str<'a>>,
    #[serde(borrow)]
    pub identifier: Option<Identifier<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Identifier<'a> {
    #[serde(borrow)]
    pub system: Option<Str<'a>>,
    #[serde(borrow)]
    pub value: Option<Str<'a>>,
    #[serde(borrow, rename = "type")]
    pub type_: Option<CodeableConcept<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ContactPoint<'a> {
    #[serde(borrow)]
    pub system: Option<Str<'a>>,
    #[serde(borrow)]
    pub value: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Address<'a> {
    #[serde(borrow)]
    pub text: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub line: Vec<Str<'a>>,
    #[serde(borrow)]
    pub city: Option<Str<'a>>,
    #[serde(borrow)]
    pub postal_code: Option<Str<'a>>,
    #[serde(borrow)]
    pub state: Option<Str<'a>>,
    #[serde(borrow)]
    pub country: Option<Str<'a>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct Position {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HumanName<'a> {
    #[serde(borrow)]
    pub text: Option<Str<'a>>,
    #[serde(borrow)]
    pub family: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub given: Vec<Str<'a>>,
    #[serde(borrow, deserialize_with = "one_or_many")]
    pub prefix: Vec<Str<'a>>,
}

impl HumanName<'_> {
    /// `text`, else given names then family name.
    pub fn display(&self) -> Option<String> {
        if let Some(t) = self
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Some(t.to_string());
        }
        let parts: Vec<&str> = self
            .given
            .iter()
            .map(|g| g.trim())
            .chain(self.family.as_deref().map(str::trim))
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// `name`: a string (Location, Organization, HealthcareService) or HumanNames (Practitioner).
#[derive(Debug)]
pub enum Name<'a> {
    Text(Str<'a>),
    Human(Vec<HumanName<'a>>),
}

impl Name<'_> {
    pub fn display(&self) -> Option<String> {
        match self {
            Name::Text(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
            Name::Human(names) => names.iter().find_map(HumanName::display),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Name<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name (string) or a list of HumanName")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name::Text(Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name::Text(Str(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name::Text(Str(Cow::Owned(v))))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut out = Vec::new();
                while let Some(n) = seq.next_element()? {
                    out.push(n);
                }
                Ok(Name::Human(out))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                Ok(Name::Human(vec![HumanName::deserialize(
                    MapAccessDeserializer::new(map),
                )?]))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A FHIR `0..*` element: a JSON array, a single object/value, or `null`.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or a single element")
        }
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(x) = seq.next_element()? {
                out.push(x);
            }
            Ok(out)
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
            Ok(vec![T::deserialize(MapAccessDeserializer::new(map))?])
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(vec![T::deserialize(
                de::value::BorrowedStrDeserializer::new(v),
            )?])
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![T::deserialize(de::value::StringDeserializer::new(
                v.to_string(),
            ))?])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// A `Bundle` with its entries kept as JSON values, so that one malformed resource is one
/// rejection instead of an unreadable bundle.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Bundle<'a> {
    #[serde(borrow)]
    pub resource_type: Option<Str<'a>>,
    #[serde(borrow, rename = "type")]
    pub type_: Option<Str<'a>>,
    #[serde(borrow)]
    pub entry: Vec<BundleEntry<'a>>,
}

/// A `Bundle` read in one typed pass (the fast path); any shape error sends the reader to
/// [`Bundle`] for per-resource diagnostics.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TypedBundle<'a> {
    #[serde(borrow)]
    pub resource_type: Option<Str<'a>>,
    #[serde(borrow, rename = "type")]
    pub type_: Option<Str<'a>>,
    #[serde(borrow)]
    pub entry: Vec<TypedEntry<'a>>,
}

/// An entry of a [`TypedBundle`]: slots are kept small, other resources boxed.
// Slots are the common variant: boxing them would cost one allocation per slot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum TypedEntry<'a> {
    Slot(SlotResource<'a>),
    Other(Box<Resource<'a>>, Option<Str<'a>>),
    Empty,
}

impl<'de: 'a, 'a> Deserialize<'de> for TypedEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw<'a> {
            #[serde(borrow, default)]
            full_url: Option<Str<'a>>,
            #[serde(borrow, default)]
            resource: Option<Resource<'a>>,
        }
        let raw = Raw::deserialize(d)?;
        Ok(match raw.resource {
            None => TypedEntry::Empty,
            Some(r) if r.resource_type.as_deref() == Some("Slot") => TypedEntry::Slot(r.into()),
            Some(r) => TypedEntry::Other(Box::new(r), raw.full_url),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleEntry<'a> {
    #[serde(borrow)]
    pub full_url: Option<Str<'a>>,
    pub resource: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_reads_location_and_practitioner_names() {
        let loc: Resource = serde_json::from_str(
            r#"{"resourceType":"Location","id":"1","name":"Cabinet","address":{"line":["1 rue X"],"postalCode":"44000"},"position":{"latitude":47.2,"longitude":-1.5}}"#,
        )
        .unwrap();
        assert_eq!(loc.name.unwrap().display().as_deref(), Some("Cabinet"));
        assert_eq!(loc.address[0].postal_code.as_deref(), Some("44000"));
        assert!(matches!(loc.id, Some(Str(Cow::Borrowed("1")))));
        let pr: Resource = serde_json::from_str(
            r#"{"resourceType":"Practitioner","name":[{"family":"Foret","given":["Pierre"]}],"address":[{"city":"Nantes"}]}"#,
        )
        .unwrap();
        assert_eq!(pr.name.unwrap().display().as_deref(), Some("Pierre Foret"));
        assert_eq!(pr.address[0].city.as_deref(), Some("Nantes"));
    }
}
