"""Wire formats, in and out: safe XML reading, OpenRosa XML documents, and (later) OData,
CSV/XLSX and DHIS2 dataValueSets. Pure functions of their inputs; no database, no Flask."""
