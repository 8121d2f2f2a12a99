//! A fast reader for the Slot lines of SMART SL NDJSON, straight into a [`SlotSummary`].
//!
//! Rules kept here: this reader is only a shortcut. It reads the usual lines — minified or
//! spaced JSON without control characters, strings without escapes, objects where FHIR has
//! objects, arrays (or one object) where it has lists — and gives up (`None`) on anything
//! else, including every malformed line; the caller then reads the line with serde_json
//! ([`super::fhir_dto::SlotResource`]), which words errors and rejections. So whenever it
//! answers, serde_json would have read the line, to the same summary (checked by the tests
//! below on generated, odd, truncated and altered lines): it validates the whole line as
//! JSON, refuses duplicate keys as serde's derived structs do, and folds values with the
//! same functions as [`SlotSummary`]'s other readers.
//!
//! Speed: one pass over the bytes; strings are found eight bytes at a time; nothing is
//! allocated.

use super::fhir_dto::{
    ConceptFold, ExtensionFold, SecurityFold, SlotCoding, SlotExtension, SlotReference,
    SlotSummary, Str,
};
use std::borrow::Cow;

/// Reads one Slot line; `None`: not a line this reader takes (see the module doc).
pub fn read(line: &str) -> Option<SlotSummary<'_>> {
    let b = line.as_bytes();
    // Control characters are whitespace between tokens at best (serde_json refuses them in
    // strings): lines holding any are left to serde_json, so strings need no check below.
    if b.iter().fold(0u8, |a, &c| a | u8::from(c < 0x20)) != 0 {
        return None;
    }
    let mut p = Parser { s: line, b, i: 0 };
    let slot = p.slot()?;
    p.ws();
    (p.i == b.len()).then_some(slot)
}

/// Deepest nesting skipped inside unknown elements (serde_json stops at 128).
const MAX_DEPTH: u32 = 64;

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes of `w` equal to `c`: the lowest set bit marks the first one exactly.
fn bytes_eq(w: u64, c: u8) -> u64 {
    let x = w ^ (LO * u64::from(c));
    x.wrapping_sub(LO) & !x & HI
}

/// Index of the first `"` or `\` at or after `i`.
fn find_quote_or_escape(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        let m = bytes_eq(w, b'"') | bytes_eq(w, b'\\');
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|p| i + p)
}

/// Marks a key as read; a second time is `None` (serde: "duplicate field").
fn first_time(seen: &mut u32, bit: u32) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.b.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = find_quote_or_escape(self.b, start)?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.s.get(start..end)
    }

    /// An optional string: `null` or a string (the outer `None`: something else).
    fn opt_str(&mut self) -> Option<Option<Str<'a>>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            _ => self.string().map(|s| Some(Str(Cow::Borrowed(s)))),
        }
    }

    fn opt_bool(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            _ => None,
        }
    }

    /// `null` or a non-negative integer that fits an `i64` (others are left to serde_json).
    fn opt_int(&mut self) -> Option<Option<i64>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b'0'..=b'9' => {
                let (start, integer) = self.number()?;
                let digits = &self.s[start..self.i];
                if !integer || digits.len() > 18 {
                    return None;
                }
                digits.parse().ok().map(Some)
            }
            _ => None,
        }
    }

    /// Validates a JSON number; returns where it starts and whether it is an integer.
    fn number(&mut self) -> Option<(usize, bool)> {
        self.ws();
        let start = self.i;
        let b = self.b;
        let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while digit(self.i) {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if b.get(self.i) == Some(&b'.') {
            integer = false;
            self.i += 1;
            if !digit(self.i) {
                return None;
            }
            while digit(self.i) {
                self.i += 1;
            }
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            integer = false;
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digit(self.i) {
                return None;
            }
            while digit(self.i) {
                self.i += 1;
            }
        }
        Some((start, integer))
    }

    /// Reads an object, calling `member` on each key with the parser before its value;
    /// `member` must read the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Reads an array, calling `item` with the parser before each element.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A FHIR `0..*` element of objects: an array of them, or one.
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        match self.peek()? {
            b'[' => self.array(item),
            b'{' => item(self),
            _ => None,
        }
    }

    /// Any value, validated and dropped.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|p, _| p.skip(depth + 1)),
            b'[' => self.array(|p| p.skip(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => None,
        }
    }

    fn reference(&mut self) -> Option<SlotReference<'a>> {
        let mut r = SlotReference::default();
        let mut seen = 0;
        self.object(|p, k| match k {
            "reference" => {
                first_time(&mut seen, 1)?;
                r.reference = p.opt_str()?;
                Some(())
            }
            _ => p.skip(0),
        })?;
        Some(r)
    }

    fn opt_reference(&mut self) -> Option<Option<SlotReference<'a>>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            _ => self.reference().map(Some),
        }
    }

    fn coding(&mut self) -> Option<SlotCoding<'a>> {
        let mut c = SlotCoding::default();
        let mut seen = 0;
        self.object(|p, k| match k {
            "code" => {
                first_time(&mut seen, 1)?;
                c.code = p.opt_str()?;
                Some(())
            }
            _ => p.skip(0),
        })?;
        Some(c)
    }

    fn extension(&mut self) -> Option<SlotExtension<'a>> {
        let mut e = SlotExtension::default();
        let mut seen = 0;
        self.object(|p, k| {
            match k {
                "url" => {
                    first_time(&mut seen, 1)?;
                    e.url = p.opt_str()?;
                }
                "valueUrl" => {
                    first_time(&mut seen, 2)?;
                    e.value_url = p.opt_str()?;
                }
                "valueString" => {
                    first_time(&mut seen, 4)?;
                    e.value_string = p.opt_str()?;
                }
                "valueInteger" => {
                    first_time(&mut seen, 8)?;
                    e.value_integer = p.opt_int()?;
                }
                "valueBoolean" => {
                    first_time(&mut seen, 16)?;
                    e.value_boolean = p.opt_bool()?;
                }
                "valueReference" => {
                    first_time(&mut seen, 32)?;
                    e.value_reference = p.opt_reference()?;
                }
                _ => p.skip(0)?,
            }
            Some(())
        })?;
        Some(e)
    }

    /// One CodeableConcept (an object).
    fn concept(&mut self) -> Option<ConceptFold<'a>> {
        let mut codings = ConceptFold::default();
        let mut extensions = ConceptFold::default();
        let mut seen = 0;
        self.object(|p, k| match k {
            "coding" => {
                first_time(&mut seen, 1)?;
                p.list(|p| {
                    codings.coding(p.coding()?);
                    Some(())
                })
            }
            "extension" => {
                first_time(&mut seen, 2)?;
                p.array(|p| {
                    extensions.extension(p.extension()?);
                    Some(())
                })
            }
            _ => p.skip(0),
        })?;
        codings.service = extensions.service;
        Some(codings)
    }

    fn concepts(&mut self) -> Option<ConceptFold<'a>> {
        let mut fold = ConceptFold::default();
        self.list(|p| {
            fold.concept(p.concept()?);
            Some(())
        })?;
        Some(fold)
    }

    fn meta(&mut self) -> Option<SecurityFold<'a>> {
        let mut security = SecurityFold::default();
        let mut seen = 0;
        self.object(|p, k| match k {
            "security" => {
                first_time(&mut seen, 1)?;
                p.list(|p| {
                    security.coding(p.coding()?);
                    Some(())
                })
            }
            _ => p.skip(0),
        })?;
        Some(security)
    }

    fn slot(&mut self) -> Option<SlotSummary<'a>> {
        let mut s = SlotSummary::default();
        let mut seen = 0;
        self.object(|p, k| {
            match k {
                "resourceType" => {
                    first_time(&mut seen, 1)?;
                    p.opt_str()?;
                }
                "id" => {
                    first_time(&mut seen, 1 << 1)?;
                    s.id = p.opt_str()?;
                }
                "meta" => {
                    first_time(&mut seen, 1 << 2)?;
                    s.security = match p.peek()? {
                        b'n' => p.literal(b"null").map(|()| SecurityFold::default())?,
                        _ => p.meta()?,
                    };
                }
                "extension" => {
                    first_time(&mut seen, 1 << 3)?;
                    let mut fold = ExtensionFold::default();
                    p.array(|p| {
                        fold.extension(p.extension()?);
                        Some(())
                    })?;
                    s.extensions = fold;
                }
                "schedule" => {
                    first_time(&mut seen, 1 << 4)?;
                    s.schedule = p.opt_reference()?.and_then(|r| r.reference);
                }
                "status" => {
                    first_time(&mut seen, 1 << 5)?;
                    s.status = p.opt_str()?;
                }
                "start" => {
                    first_time(&mut seen, 1 << 6)?;
                    s.start = p.opt_str()?;
                }
                "end" => {
                    first_time(&mut seen, 1 << 7)?;
                    s.end = p.opt_str()?;
                }
                "comment" => {
                    first_time(&mut seen, 1 << 8)?;
                    s.comment = p.opt_str()?;
                }
                "serviceType" => {
                    first_time(&mut seen, 1 << 9)?;
                    s.service_type = p.concepts()?;
                }
                "specialty" => {
                    first_time(&mut seen, 1 << 10)?;
                    s.specialty = p.concepts()?.code;
                }
                "appointmentType" => {
                    first_time(&mut seen, 1 << 11)?;
                    s.appointment_type = match p.peek()? {
                        b'n' => p.literal(b"null").map(|()| None)?,
                        _ => p.concept()?.code,
                    };
                }
                _ => p.skip(0)?,
            }
            Some(())
        })?;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::fhir_dto::SlotResource;

    /// The invariant of the module: an answer is serde_json's answer.
    fn check(line: &str) -> bool {
        let slow = serde_json::from_str::<SlotResource>(line).map(SlotSummary::from);
        let fast = read(line);
        if let Some(fast) = &fast {
            match &slow {
                Ok(slow) => assert_eq!(fast, slow, "{line}"),
                Err(e) => panic!("read a line serde_json refuses ({e}): {line}"),
            }
        }
        fast.is_some()
    }

    fn generated_lines(slots: usize) -> Vec<String> {
        use crate::ingest::generate::{GenSpec, generate, to_ndjson};
        let start = "2026-05-04T06:00:00Z".parse().unwrap();
        let feed = generate(&GenSpec::new(13, slots, 60, start));
        String::from_utf8(to_ndjson(&feed))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(r#"{"resourceType":"Slot""#))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn finds_the_first_quote_or_backslash_wherever_it_is() {
        for len in 0..100 {
            for at in 0..=len {
                for c in [b'"', b'\\'] {
                    let mut b = vec![b'a'; len];
                    if at < len {
                        b[at] = c;
                        b.push(b'"');
                    }
                    for from in [0, 1, 7, 8, 9].into_iter().filter(|f| *f <= b.len()) {
                        let expected = b[from..]
                            .iter()
                            .position(|&c| c == b'"' || c == b'\\')
                            .map(|p| from + p);
                        assert_eq!(
                            find_quote_or_escape(&b, from),
                            expected,
                            "{len} {at} {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reads_generated_lines_as_serde_json_does() {
        let lines = generated_lines(2_000);
        assert_eq!(lines.len(), 2_000);
        for l in &lines {
            assert!(check(l), "{l}");
        }
    }

    #[test]
    fn spaced_and_odd_but_valid_lines() {
        for line in [
            r#"{ "resourceType" : "Slot" , "id" : "a" , "x" : [ 1 , -2.5e+3 , true , false , null , { } , [ ] , "y" ] , "status" : "free" }"#,
            r#"{"id":"a","serviceType":{"coding":{"code":"VR"}},"specialty":{"coding":[{"code":" "},{"code":"X"}]},"appointmentType":null,"meta":null,"schedule":null}"#,
            r#"{"extension":[{"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity","valueInteger":0},{"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity","valueInteger":7,"valueBoolean":null}]}"#,
            r#"{}"#,
        ] {
            assert!(check(line), "{line}");
        }
        for line in [
            r#"{"id":"a\u0062"}"#,
            r#"{"extension":[{"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity","valueInteger":-3}]}"#,
            r#"{"extension":[{"url":"u","valueInteger":2.0}]}"#,
            r#"{"meta":{"security":null}}"#,
            r#"{"id":"a","id":"b"}"#,
            r#"{"schedule":["Schedule/a"]}"#,
            "{\"id\":\"a\",\t\"status\":\"free\"}",
            r#"{"id":"a"} {}"#,
            r#"{"x":01}"#,
            r#"{"x":1.}"#,
            r#"{"x":-}"#,
            r#"{"x":[1,]}"#,
            r#"{"x":{"a":1,}}"#,
            r#"{"x":tru}"#,
            r#"{"id":"a",}"#,
            r#"{"id" "a"}"#,
        ] {
            assert!(!check(line), "{line}");
        }
    }

    #[test]
    fn truncated_or_altered_lines_are_never_misread() {
        let lines = generated_lines(40);
        let replacements: &[&[u8]] = &[
            b"", b" ", b"\"", b",", b":", b"{", b"}", b"[", b"]", b"0", b"-", b"n", b"\\", b"x",
        ];
        for l in lines.iter().take(6) {
            let b = l.as_bytes();
            for cut in 0..b.len() {
                if let Ok(t) = std::str::from_utf8(&b[..cut]) {
                    check(t);
                }
                for r in replacements {
                    let mut m = b[..cut].to_vec();
                    m.extend_from_slice(r);
                    m.extend_from_slice(&b[(cut + 1).min(b.len())..]);
                    if let Ok(t) = std::str::from_utf8(&m) {
                        check(t);
                    }
                }
            }
        }
    }
}
