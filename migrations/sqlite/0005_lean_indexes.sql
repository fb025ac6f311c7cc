-- Rows of one incident are found through the unique keys, which start with
-- incident_id; the (incident_id, id) indexes only repeated them and cost an
-- index insert per transition and per piece of evidence.
DROP INDEX transitions_by_incident;
DROP INDEX evidence_by_incident;
