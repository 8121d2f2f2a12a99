//! Offline place resolution on the region's commune geography: coordinates → commune
//! (point-in-polygon), postal code and/or city → commune and its interior point. The optional
//! online geocoder (`geocoder_url`) is not needed for any of this.

use super::PlaceResolver;
use crate::domain::{InseeCode, LatLon, Postcode};
use crate::geo::Geography;

impl PlaceResolver for Geography {
    fn commune_at(&self, p: LatLon) -> Option<InseeCode> {
        self.locate(p).map(|l| l.commune.insee.clone())
    }

    fn resolve(
        &self,
        postcode: Option<&Postcode>,
        city: Option<&str>,
    ) -> Option<(InseeCode, LatLon)> {
        self.resolve_place(postcode, city)
            .map(|c| (c.insee.clone(), c.interior))
    }
}
