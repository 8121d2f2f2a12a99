//! ANS SAS FHIR R4 bundles, and the resource graph shared with SMART Scheduling Links.
//!
//! Rules kept here (the three shapes of the IG, and SMART SL which is the same graph):
//! - **place**: Slot → Schedule → an actor `Location` (SOS Médecins, SMART SL), else an actor
//!   `PractitionerRole` → its `location` (contained `#id` in the SAS PS/CPTS shapes). A
//!   contained Location is keyed by its identifier (`system|value`), so the same cabinet
//!   contained in two PractitionerRoles is one place; a top-level one by `Location/id`.
//! - **practitioner**: the Schedule's `Practitioner` actor, else the PractitionerRole's
//!   `practitioner` (resource, or a logical reference with identifier/display). National id
//!   from the IDNPS identifier (`urn:oid:1.2.250.1.71.4.2.1`) with its SAS prefix (8 RPPS,
//!   0 ADELI); profession from PractitionerRole.code (TRE_G15); specialty from Slot.specialty,
//!   else PractitionerRole.specialty (first code, TRE_R38).
//! - **structure**: a Slot.serviceType carrying the R5 `extension-Slot.serviceType` reference
//!   → HealthcareService → providedBy Organization = the CPTS (first one when several); else
//!   the Location's managingOrganization (SOS Médecins when a `sas-sos` profile or the name
//!   says so, OTHER otherwise). PractitionerRole.organization is the practitioner's own
//!   practice and is not a structure. Structure ids take their SAS prefix (1 FINESS, 3 SIRET).
//! - **slot**: modality = first v3-ActCode AMB/HH/VR of serviceType (AMB when none; the domain
//!   holds one); audience = meta.security TRE_R314 codes; booking URL = SMART
//!   `booking-deep-link`, else `Slot.comment` when it is an http(s) URL (SAS); phone = SMART
//!   `booking-phone`, else PractitionerRole, Location, then Organization telecom; capacity =
//!   SMART `slot-capacity` (1 when absent); surnuméraire = sasnp extension
//!   [`EXT_SURNUMERAIRE`] (no IG element exists).
//! - every reference on a slot's chain must resolve, else the slot is rejected
//!   `unresolved_reference`; a chain without any Location is `missing_field`.
//! - statuses: `free` → Free, `busy*` → Busy, `entered-in-error` → `removed_ids`.

use super::fhir_dto::{
    Bundle, CodeableConcept, ContactPoint, Identifier, Reference, Resource, SlotResource,
    SlotSummary, TypedBundle, TypedEntry,
};
use super::normalize::{
    EndSpec, FastMap, Normalizer, OID_IDNPS, OID_IDNST, PlaceId, PlaceInput, Rejection, SlotDraft,
    normalize_phone, practitioner_national_id, structure_national_id,
};
use super::report::{Where, reason};
use super::{FeedError, IngestContext, IngestOutcome, strip_bom};
use crate::domain::fold_name;
use crate::domain::slot::{AppointmentType, Modality, Practitioner, Structure, StructureKind};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;

/// R5 backport extension linking a CPTS slot to its HealthcareService.
pub const EXT_SLOT_SERVICE_TYPE: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType";
/// SMART SL booking deep link (`valueUrl`).
pub const EXT_BOOKING_DEEP_LINK: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/booking-deep-link";
/// SMART SL booking phone (`valueString`).
pub const EXT_BOOKING_PHONE: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/booking-phone";
/// SMART SL slot capacity (`valueInteger`).
pub const EXT_SLOT_CAPACITY: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity";
/// sasnp's own extension for "surnuméraire" (extra) slots (`valueBoolean`); neither the SAS
/// IG nor SMART SL has an element for it.
pub const EXT_SURNUMERAIRE: &str = "urn:sasnp:StructureDefinition:slot-surnumeraire";
/// v3-ActCode system (AMB, HH, VR).
pub const SYSTEM_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// TRE_R314 TypeCreneau (audience) system.
pub const SYSTEM_TYPE_CRENEAU: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau";
/// TRE_R38 SpecialiteOrdinale system.
pub const SYSTEM_SPECIALITE: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale";
/// TRE_G15 ProfessionSante system.
pub const SYSTEM_PROFESSION: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";
/// v2-0276 appointment reason system.
pub const SYSTEM_APPOINTMENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0276";

/// Reads a SAS FHIR `Bundle` (searchset or collection). Not JSON, not a Bundle or another
/// Bundle type → [`FeedError`]; a resource that cannot be read is rejected (Slot) or
/// warned about (`invalid_resource`) and the rest goes on.
pub fn ingest_bundle(bytes: &[u8], ctx: &IngestContext<'_>) -> Result<IngestOutcome, FeedError> {
    let bytes = strip_bom(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FeedError::Empty);
    }
    // Fast path: one typed pass. A shape error anywhere falls back to the slow path, which
    // reads resource by resource to say which one is wrong.
    match serde_json::from_slice::<TypedBundle<'_>>(bytes) {
        Ok(bundle) => {
            check_bundle(bundle.resource_type.as_deref(), bundle.type_.as_deref())?;
            let norm = Normalizer::new(ctx);
            let mut graph = Graph::default();
            let mut slots = Vec::new();
            for entry in bundle.entry {
                match entry {
                    TypedEntry::Slot(s) => slots.push(s),
                    TypedEntry::Other(r, full_url) => graph.add(*r, None, full_url.as_deref()),
                    TypedEntry::Empty => {}
                }
            }
            Ok(emit_all(&graph, slots, norm))
        }
        Err(e) if e.is_syntax() || e.is_eof() => Err(FeedError::json(&e, 0)),
        Err(_) => ingest_bundle_slow(bytes, ctx),
    }
}

fn emit_all<'v>(
    graph: &Graph<'v>,
    slots: Vec<SlotResource<'v>>,
    mut norm: Normalizer<'_, 'v>,
) -> IngestOutcome {
    norm.reserve(slots.len());
    let mut emitter = SlotEmitter::default();
    for slot in slots {
        emitter.emit(graph, slot.into(), None, &mut norm);
    }
    let (feed, report, removed_ids) = norm.finish();
    IngestOutcome {
        feed,
        report,
        removed_ids,
    }
}

fn check_bundle(resource_type: Option<&str>, type_: Option<&str>) -> Result<(), FeedError> {
    match resource_type {
        Some("Bundle") => {}
        Some(other) => {
            return Err(FeedError::shape(
                None,
                format!("expected a FHIR Bundle, found resourceType `{other}`"),
            ));
        }
        None => {
            return Err(FeedError::shape(
                None,
                "expected a FHIR Bundle: no resourceType",
            ));
        }
    }
    match type_ {
        Some("searchset" | "collection") | None => Ok(()),
        Some(other) => Err(FeedError::shape(
            None,
            format!("Bundle.type `{other}` is not supported (searchset or collection)"),
        )),
    }
}

/// Resource-by-resource reading, for bundles where some resource has the wrong shape.
fn ingest_bundle_slow(bytes: &[u8], ctx: &IngestContext<'_>) -> Result<IngestOutcome, FeedError> {
    let bundle: Bundle<'_> = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            FeedError::shape(None, format!("not a FHIR Bundle: {e}"))
        }
        _ => FeedError::json(&e, 0),
    })?;
    check_bundle(bundle.resource_type.as_deref(), bundle.type_.as_deref())?;
    let mut norm = Normalizer::new(ctx);
    let mut graph = Graph::default();
    let mut slots = Vec::new();
    for (i, entry) in bundle.entry.iter().enumerate() {
        let Some(value) = entry.resource.as_ref() else {
            continue;
        };
        let kind = value
            .get("resourceType")
            .and_then(|v| v.as_str())
            .unwrap_or("resource");
        let parsed = if kind == "Slot" {
            SlotResource::deserialize(value).map(|s| slots.push(s))
        } else {
            Resource::deserialize(value).map(|r| graph.add(r, None, entry.full_url.as_deref()))
        };
        if let Err(e) = parsed {
            let id = value.get("id").and_then(|v| v.as_str()).unwrap_or("");
            let label = if id.is_empty() {
                format!("entry {}", i + 1)
            } else {
                id.to_string()
            };
            if kind == "Slot" {
                norm.reject_unreadable(
                    reason::INVALID_VALUE,
                    Where::resource("Slot", &label),
                    || format!("Slot cannot be read: {e}"),
                );
            } else {
                norm.report.warn(
                    reason::INVALID_RESOURCE,
                    Where::resource(static_kind(kind), &label),
                    || format!("{kind} cannot be read: {e}"),
                );
            }
        }
    }
    Ok(emit_all(&graph, slots, norm))
}

/// Resource types named in reports.
pub(crate) fn static_kind(kind: &str) -> &'static str {
    match kind {
        "Slot" => "Slot",
        "Schedule" => "Schedule",
        "Location" => "Location",
        "Practitioner" => "Practitioner",
        "PractitionerRole" => "PractitionerRole",
        "HealthcareService" => "HealthcareService",
        "Organization" => "Organization",
        _ => "resource",
    }
}

/// The non-slot resources of a feed, indexed by `Type/id` (and by `fullUrl`).
#[derive(Default)]
pub(crate) struct Graph<'v> {
    nodes: Vec<(Resource<'v>, Option<usize>)>,
    index: FastMap<String, usize>,
}

impl<'v> Graph<'v> {
    pub fn add(&mut self, res: Resource<'v>, line: Option<usize>, full_url: Option<&str>) {
        let i = self.nodes.len();
        if let (Some(t), Some(id)) = (res.resource_type.as_deref(), res.id.as_deref()) {
            self.index.entry(format!("{t}/{id}")).or_insert(i);
        }
        if let Some(u) = full_url.filter(|u| !u.is_empty()) {
            self.index.entry(u.to_string()).or_insert(i);
        }
        self.nodes.push((res, line));
    }

    /// The resource a literal reference names: `Type/id`, an absolute URL ending in
    /// `Type/id` (optionally `/_history/n`), or a `fullUrl` (`urn:uuid:…`).
    fn get(&self, reference: &str) -> Option<(usize, &Resource<'v>)> {
        let r = reference.trim();
        // Most references hold no `_`, hence no `/_history/` to cut (cheaper than a search).
        let r = if r.as_bytes().contains(&b'_') {
            r.split("/_history/").next().unwrap_or(r)
        } else {
            r
        };
        let i = match self.index.get(r) {
            Some(i) => *i,
            None => {
                let mut it = r.rsplitn(3, '/');
                let id = it.next()?;
                let t = it.next()?;
                *self.index.get(&format!("{t}/{id}"))?
            }
        };
        Some((i, &self.nodes[i].0))
    }

    fn line(&self, i: usize) -> Option<usize> {
        self.nodes[i].1
    }
}

/// What every slot of one Schedule shares, as read.
struct ScheduleCtx {
    place: Result<PlaceId, Rejection>,
    practitioner: Option<Practitioner>,
    structure: Option<Structure>,
    phone: Option<String>,
}

/// A [`ScheduleCtx`] behind `Arc`s: each slot of the schedule gets pointers, not copies.
#[derive(Clone)]
struct SharedSchedule {
    place: Result<PlaceId, Rejection>,
    practitioner: Option<Arc<Practitioner>>,
    structure: Option<Arc<Structure>>,
    phone: Option<Arc<str>>,
}

impl From<ScheduleCtx> for SharedSchedule {
    fn from(c: ScheduleCtx) -> Self {
        Self {
            place: c.place,
            practitioner: c.practitioner.map(Arc::new),
            structure: c.structure.map(Arc::new),
            phone: c.phone.map(Arc::from),
        }
    }
}

/// Resolves and normalises slots against a complete graph (shared by SAS bundles and SMART
/// SL), caching what every slot of a Schedule or HealthcareService shares.
#[derive(Default)]
pub(crate) struct SlotEmitter {
    schedules: FastMap<usize, SharedSchedule>,
    services: FastMap<usize, Result<Arc<Structure>, Rejection>>,
    /// Booking phones by value as written (slots of a schedule usually repeat one number).
    phones: FastMap<Box<str>, Option<Arc<str>>>,
}

impl SlotEmitter {
    pub fn emit<'v>(
        &mut self,
        graph: &Graph<'v>,
        slot: SlotSummary<'v>,
        line: Option<usize>,
        norm: &mut Normalizer<'_, 'v>,
    ) {
        let SlotSummary {
            id,
            schedule,
            status,
            start,
            end,
            comment,
            service_type,
            specialty,
            appointment_type,
            security,
            extensions,
        } = slot;
        let id = id.map(|s| s.0);
        let ctx = match schedule.as_deref() {
            None => Err(Rejection::new(
                reason::MISSING_FIELD,
                "no Slot.schedule reference",
            )),
            Some(r) => match graph.get(r) {
                Some((i, s)) if s.resource_type.as_deref() == Some("Schedule") => Ok(self
                    .schedules
                    .entry(i)
                    .or_insert_with(|| schedule_ctx(graph, s, norm).into())
                    .clone()),
                _ => Err(Rejection::new(
                    reason::UNRESOLVED_REFERENCE,
                    format!("Schedule `{r}` is not in the feed"),
                )),
            },
        };
        let mut d = match ctx {
            Ok(c) => {
                let mut d = SlotDraft::new(id, c.place);
                d.practitioner = c.practitioner;
                d.structure = c.structure;
                d.booking_phone = c.phone;
                d
            }
            Err(r) => SlotDraft::new(id, Err(r)),
        };
        d.status = status.as_deref();
        d.start = start.as_deref();
        d.end = end.as_deref().map_or(EndSpec::Missing, EndSpec::End);
        let at_id = d.id.clone(); // free when borrowed from the input
        let at = Where {
            line,
            resource: Some(("Slot", at_id.as_deref().unwrap_or(""))),
        };
        // Modality and CPTS structure (serviceType).
        d.modality = service_type.modality.unwrap_or(Modality::Ambulatory);
        match service_type.service {
            Some(Some(rf)) => match graph.get(&rf) {
                Some((i, hs)) => match self
                    .services
                    .entry(i)
                    .or_insert_with(|| healthcare_service(graph, hs).map(Arc::new))
                {
                    Ok(s) => d.structure = Some(s.clone()),
                    Err(r) => d.place = Err(r.clone()),
                },
                None => {
                    d.place = Err(Rejection::new(
                        reason::UNRESOLVED_REFERENCE,
                        format!("HealthcareService `{}` is not in the feed", &*rf),
                    ))
                }
            },
            Some(None) => {
                d.place = Err(Rejection::new(
                    reason::MISSING_FIELD,
                    "Slot.serviceType extension without valueReference",
                ))
            }
            None => {}
        }
        // Audience (meta.security).
        d.audience = security.audience;
        for c in &security.unknown {
            norm.report.warn(reason::IGNORED_VALUE, at, || {
                format!(
                    "meta.security code `{}` is not a TRE_R314 slot type (PUBLIC, PRO, SNP, CPTS)",
                    c.as_deref().unwrap_or("")
                )
            });
        }
        if let Some(at_code) = appointment_type.as_deref().map(str::trim) {
            d.appointment_type = AppointmentType::parse(at_code);
            if d.appointment_type.is_none() {
                norm.report.warn(reason::IGNORED_VALUE, at, || {
                    format!("appointmentType `{at_code}` is not ROUTINE or WALKIN")
                });
            }
        }
        if let Some(spec) = specialty.as_deref().map(str::trim)
            && let Some(p) = d.practitioner.as_mut()
            && p.specialty.as_deref() != Some(spec)
        {
            Arc::make_mut(p).specialty = Some(spec.to_string());
        }
        // The slot's extensions.
        if let Some(u) = extensions.booking_url.as_deref() {
            d.booking_url = Some(u.trim().to_string());
        }
        if let Some(raw) = extensions.booking_phone.as_deref() {
            let p = match self.phones.get(raw) {
                Some(p) => p.clone(),
                None => {
                    let p: Option<Arc<str>> = normalize_phone(raw).map(Arc::from);
                    self.phones.insert(raw.into(), p.clone());
                    p
                }
            };
            if p.is_some() {
                d.booking_phone = p;
            }
        }
        for _ in 0..extensions.bad_capacity {
            norm.report.warn(reason::IGNORED_VALUE, at, || {
                "slot-capacity is not a positive valueInteger; capacity 1 assumed".to_string()
            });
        }
        if let Some(n) = extensions.capacity {
            d.capacity = n;
        }
        if let Some(b) = extensions.surnumeraire {
            d.surnumeraire = b;
        }
        if d.booking_url.is_none()
            && let Some(c) = comment.as_deref().map(str::trim)
            && (c.starts_with("https://") || c.starts_with("http://"))
        {
            d.booking_url = Some(c.to_string());
        }
        norm.slot(d, line, Some("Slot"));
    }
}

fn first_code<'x>(cc: &'x CodeableConcept<'_>) -> Option<&'x str> {
    cc.coding
        .iter()
        .find_map(|c| c.code.as_deref().map(str::trim).filter(|c| !c.is_empty()))
}

fn phone_of(telecom: &[ContactPoint<'_>]) -> Option<String> {
    telecom
        .iter()
        .filter(|t| t.system.as_deref().is_none_or(|s| s == "phone"))
        .find_map(|t| t.value.as_deref().and_then(normalize_phone))
}

fn schedule_ctx<'v>(
    graph: &Graph<'v>,
    schedule: &Resource<'v>,
    norm: &mut Normalizer<'_, 'v>,
) -> ScheduleCtx {
    let sid = schedule.id.as_deref().unwrap_or("");
    let mut ctx = ScheduleCtx {
        place: Err(Rejection::new(
            reason::MISSING_FIELD,
            format!(
                "Schedule `{sid}` leads to no Location (expected a Location actor, or a PractitionerRole with a location)"
            ),
        )),
        practitioner: None,
        structure: None,
        phone: None,
    };
    let mut place: Option<Result<PlaceId, Rejection>> = None;
    let mut role_phone = None;
    let mut location_phone = None;
    let mut org_phone = None;
    let mut practitioner: Option<Practitioner> = None;
    let mut role_extra: Option<(Option<String>, Option<String>)> = None; // profession, specialty
    for actor in &schedule.actor {
        let Some(r) = actor.reference.as_deref() else {
            continue;
        };
        let Some((ai, res)) = graph.get(r) else {
            ctx.place = Err(Rejection::new(
                reason::UNRESOLVED_REFERENCE,
                format!("Schedule `{sid}` actor `{r}` is not in the feed"),
            ));
            return ctx;
        };
        match res.resource_type.as_deref() {
            Some("Location") if place.is_none() => {
                let (p, structure, phones) = location_place(graph, res, None, graph.line(ai), norm);
                place = Some(p);
                if ctx.structure.is_none() {
                    ctx.structure = structure;
                }
                location_phone = location_phone.or(phones.0);
                org_phone = org_phone.or(phones.1);
            }
            Some("Practitioner") if practitioner.is_none() => {
                practitioner = Some(practitioner_of(res, norm, graph.line(ai)));
            }
            Some("PractitionerRole") => {
                role_phone = role_phone.or_else(|| phone_of(&res.telecom));
                role_extra = Some((
                    res.code.iter().find_map(first_code).map(str::to_string),
                    res.specialty
                        .iter()
                        .find_map(first_code)
                        .map(str::to_string),
                ));
                if practitioner.is_none()
                    && let Some(pref) = &res.practitioner
                {
                    match practitioner_from_reference(graph, pref, norm) {
                        Ok(p) => practitioner = p,
                        Err(rej) => {
                            ctx.place = Err(rej);
                            return ctx;
                        }
                    }
                }
                if place.is_none()
                    && let Some(lref) = res.location.iter().find_map(|l| l.reference.as_deref())
                {
                    let found = match lref.strip_prefix('#') {
                        Some(local) => res
                            .contained
                            .iter()
                            .find(|c| c.id.as_deref() == Some(local))
                            .map(|loc| location_place(graph, loc, Some(res), graph.line(ai), norm)),
                        None => graph.get(lref).map(|(li, loc)| {
                            location_place(graph, loc, None, graph.line(li), norm)
                        }),
                    };
                    match found {
                        Some((p, structure, phones)) => {
                            place = Some(p);
                            if ctx.structure.is_none() {
                                ctx.structure = structure;
                            }
                            location_phone = location_phone.or(phones.0);
                            org_phone = org_phone.or(phones.1);
                        }
                        None => {
                            ctx.place = Err(Rejection::new(
                                reason::UNRESOLVED_REFERENCE,
                                format!("PractitionerRole location `{lref}` is not in the feed"),
                            ));
                            return ctx;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((profession, specialty)) = role_extra {
        let p = practitioner.get_or_insert_with(Practitioner::default);
        if p.profession.is_none() {
            p.profession = profession;
        }
        if p.specialty.is_none() {
            p.specialty = specialty;
        }
    }
    ctx.practitioner = practitioner;
    ctx.phone = role_phone.or(location_phone).or(org_phone);
    if let Some(p) = place {
        ctx.place = p;
    }
    ctx
}

fn practitioner_from_reference<'v>(
    graph: &Graph<'v>,
    r: &Reference<'_>,
    norm: &mut Normalizer<'_, 'v>,
) -> Result<Option<Practitioner>, Rejection> {
    if let Some(rf) = r.reference.as_deref() {
        if let Some((i, res)) = graph.get(rf) {
            return Ok(Some(practitioner_of(res, norm, graph.line(i))));
        }
        if r.identifier.is_none() && r.display.is_none() {
            return Err(Rejection::new(
                reason::UNRESOLVED_REFERENCE,
                format!("Practitioner `{rf}` is not in the feed"),
            ));
        }
    }
    let national_id = r
        .identifier
        .as_ref()
        .and_then(|i| practitioner_id(i, norm, Where::default()));
    let name = r
        .display
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(
        (national_id.is_some() || name.is_some()).then(|| Practitioner {
            national_id,
            name,
            ..Default::default()
        }),
    )
}

fn practitioner_of(
    res: &Resource<'_>,
    norm: &mut Normalizer<'_, '_>,
    line: Option<usize>,
) -> Practitioner {
    let at = Where {
        line,
        resource: Some(("Practitioner", res.id.as_deref().unwrap_or(""))),
    };
    let ids = &res.identifier;
    let chosen = ids
        .iter()
        .find(|i| i.system.as_deref() == Some(OID_IDNPS))
        .or_else(|| ids.iter().find(|i| is_type(i, "IDNPS")));
    Practitioner {
        national_id: chosen.and_then(|i| practitioner_id(i, norm, at)),
        name: res.name.as_ref().and_then(|n| n.display()),
        profession: None,
        specialty: None,
    }
}

fn is_type(i: &Identifier<'_>, code: &str) -> bool {
    i.type_
        .as_ref()
        .is_some_and(|t| t.coding.iter().any(|c| c.code.as_deref() == Some(code)))
}

fn practitioner_id(
    i: &Identifier<'_>,
    norm: &mut Normalizer<'_, '_>,
    at: Where<'_>,
) -> Option<String> {
    let v = i
        .value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())?;
    let (id, ok) = practitioner_national_id(v);
    if !ok {
        norm.report.warn(reason::UNRECOGNISED_IDENTIFIER, at, || {
            format!("practitioner identifier `{v}` is neither an RPPS (11 digits) nor an ADELI (9); kept as given")
        });
    }
    Some(id)
}

fn structure_id(
    i: &Identifier<'_>,
    norm: &mut Normalizer<'_, '_>,
    at: Where<'_>,
) -> Option<String> {
    let v = i
        .value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())?;
    let (id, ok) = structure_national_id(v);
    if !ok {
        norm.report.warn(reason::UNRECOGNISED_IDENTIFIER, at, || {
            format!(
                "structure identifier `{v}` is neither a FINESS (9) nor a SIRET (14); kept as given"
            )
        });
    }
    Some(id)
}

fn organization_structure(
    res: &Resource<'_>,
    kind: StructureKind,
    norm: &mut Normalizer<'_, '_>,
    line: Option<usize>,
) -> Structure {
    let at = Where {
        line,
        resource: Some(("Organization", res.id.as_deref().unwrap_or(""))),
    };
    let ids = &res.identifier;
    let chosen = ids
        .iter()
        .find(|i| i.system.as_deref() == Some(OID_IDNST))
        .or_else(|| ids.iter().find(|i| is_type(i, "IDNST")))
        .or_else(|| ids.first());
    Structure {
        kind,
        national_id: chosen.and_then(|i| structure_id(i, norm, at)),
        name: res.name.as_ref().and_then(|n| n.display()),
    }
}

/// HealthcareService → providedBy Organization = the CPTS.
fn healthcare_service(graph: &Graph<'_>, hs: &Resource<'_>) -> Result<Structure, Rejection> {
    let by = hs.provided_by.as_ref();
    match by.and_then(|r| r.reference.as_deref()) {
        Some(rf) => match graph.get(rf) {
            Some((_, org)) => {
                // Warnings about the organization's identifier are not repeated per service.
                let ids = &org.identifier;
                let chosen = ids
                    .iter()
                    .find(|i| i.system.as_deref() == Some(OID_IDNST))
                    .or_else(|| ids.iter().find(|i| is_type(i, "IDNST")))
                    .or_else(|| ids.first());
                Ok(Structure {
                    kind: StructureKind::Cpts,
                    national_id: chosen
                        .and_then(|i| i.value.as_deref())
                        .map(|v| structure_national_id(v).0),
                    name: org
                        .name
                        .as_ref()
                        .and_then(|n| n.display())
                        .or_else(|| hs.name.as_ref().and_then(|n| n.display())),
                })
            }
            None => Err(Rejection::new(
                reason::UNRESOLVED_REFERENCE,
                format!("Organization `{rf}` is not in the feed"),
            )),
        },
        None => Ok(Structure {
            kind: StructureKind::Cpts,
            national_id: by
                .and_then(|r| r.identifier.as_ref())
                .and_then(|i| i.value.as_deref())
                .map(|v| structure_national_id(v).0),
            name: by
                .and_then(|r| r.display.as_deref())
                .map(str::to_string)
                .or_else(|| hs.name.as_ref().and_then(|n| n.display())),
        }),
    }
}

/// Place (and SOS/other structure, phones) of a Location resource.
#[allow(clippy::type_complexity)]
fn location_place<'v>(
    graph: &Graph<'v>,
    loc: &Resource<'_>,
    container: Option<&Resource<'_>>,
    line: Option<usize>,
    norm: &mut Normalizer<'_, 'v>,
) -> (
    Result<PlaceId, Rejection>,
    Option<Structure>,
    (Option<String>, Option<String>),
) {
    let lid = loc.id.as_deref().unwrap_or("");
    let key: Cow<'_, str> = match container {
        None => Cow::Owned(format!("Location/{lid}")),
        Some(role) => match loc.identifier.iter().find(|i| i.value.is_some()) {
            Some(i) => Cow::Owned(format!(
                "{}|{}",
                i.system.as_deref().unwrap_or(""),
                i.value.as_deref().unwrap_or("")
            )),
            None => Cow::Owned(format!(
                "PractitionerRole/{}#{lid}",
                role.id.as_deref().unwrap_or("")
            )),
        },
    };
    let at = Where {
        line,
        resource: Some(("Location", lid)),
    };
    let place = match norm.place_by_key(&key) {
        Some(p) => p,
        None => {
            let addr = loc.address.first();
            let address = addr.and_then(|a| {
                let lines: Vec<&str> = a
                    .line
                    .iter()
                    .map(|l| l.trim())
                    .filter(|l| !l.is_empty())
                    .collect();
                if lines.is_empty() {
                    a.text.as_deref().map(|t| Cow::Owned(t.to_string()))
                } else {
                    Some(Cow::Owned(lines.join(", ")))
                }
            });
            let position = loc.position.and_then(|p| Some((p.latitude?, p.longitude?)));
            let input = PlaceInput {
                key: key.clone(),
                name: loc.name.as_ref().and_then(|n| n.display()).map(Cow::Owned),
                address,
                postcode: addr
                    .and_then(|a| a.postal_code.as_deref())
                    .map(|s| Cow::Owned(s.to_string())),
                city: addr
                    .and_then(|a| a.city.as_deref())
                    .map(|s| Cow::Owned(s.to_string())),
                position,
            };
            norm.place(input, at)
        }
    };
    let mut place = Ok(place); // a place's own rejection is applied per slot by the normalizer
    let location_phone = phone_of(&loc.telecom);
    let mut structure = None;
    let mut org_phone = None;
    if let Some(rf) = loc
        .managing_organization
        .as_ref()
        .and_then(|r| r.reference.as_deref())
    {
        if let Some((oi, org)) = graph.get(rf) {
            let sos = is_sos(loc) || is_sos(org);
            let kind = if sos {
                StructureKind::Sos
            } else {
                StructureKind::Other
            };
            structure = Some(organization_structure(org, kind, norm, graph.line(oi)));
            org_phone = phone_of(&org.telecom);
        } else {
            place = Err(Rejection::new(
                reason::UNRESOLVED_REFERENCE,
                format!("Organization `{rf}` is not in the feed"),
            ));
        }
    }
    (place, structure, (location_phone, org_phone))
}

fn is_sos(res: &Resource<'_>) -> bool {
    res.meta
        .as_ref()
        .is_some_and(|m| m.profile.iter().any(|p| p.contains("sas-sos")))
        || res
            .name
            .as_ref()
            .and_then(|n| n.display())
            .is_some_and(|n| fold_name(&n).contains("sos medecin"))
}
