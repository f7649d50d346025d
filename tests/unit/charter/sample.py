"""A small, valid charter used across the charter tests (line numbers matter: keep it stable)."""

from __future__ import annotations

SMALL = '''\
# Charte d'exemple pour les tests
[charter]
id = "charte-test"
version = 1
title = "Charte de test"
effective = 2025-01-01
default_article = "art-1"
secret_article = "art-2"

[[articles]]
id = "art-1"
title = "Information strictement nécessaire"
text = """Seules les informations strictement nécessaires sont échangées."""

[[articles]]
id = "art-2"
title = "Secret partagé"
text = "Les informations secrètes ne circulent qu'entre professionnels astreints."

[[fields]]
id = "identite.prenom"
label_fr = "Prénom"
label_en = "First name"
category = "identite"
tier = "e2e"
secrecy = "confidentiel"
basis = "consentement"
article = "art-1"

[[fields]]
id = "justice.date_sortie"
label_fr = "Date de sortie prévisible"
label_en = "Expected release date"
category = "justice"
tier = "hub"
secrecy = "confidentiel"
basis = "CSI L.132-5"
article = "art-1"

[[fields]]
id = "sante.orientation"
label_fr = "Orientation santé"
label_en = "Health referral"
category = "sante"
tier = "e2e"
secrecy = "secret"
basis = "CASF L.121-6-2"
article = "art-2"

[[fields]]
id = "sante.diagnostic"
label_fr = "Diagnostic"
label_en = "Diagnosis"
category = "sante"
tier = "e2e"
secrecy = "interdit"
basis = "consentement"
article = "art-2"

[[purposes]]
id = "suivi_parcours"
label_fr = "Suivi du parcours"
label_en = "Path follow-up"
article = "art-1"

[[purposes]]
id = "revue_mensuelle"
label_fr = "Revue mensuelle"
label_en = "Monthly review"
article = "art-1"

[[publish]]
id = "pub-justice"
kinds = ["spip", "pjj"]
fields = ["identite.*", "justice.*", "sante.orientation"]
article = "art-1"

[[view]]
id = "view-referent"
roles = ["referent"]
kinds = ["mission_locale", "spip"]
group_member = false
purposes = ["suivi_parcours"]
fields = ["identite.prenom", "justice.date_sortie"]
article = "art-1"

[[view]]
id = "view-secret"
roles = ["referent"]
kinds = ["spip"]
group_member = false
purposes = ["suivi_parcours"]
fields = ["sante.orientation"]
article = "art-2"

[[view]]
id = "view-revue"
roles = ["group_member"]
kinds = ["*"]
group_member = true
purposes = ["revue_mensuelle"]
fields = ["identite.prenom"]
article = "art-1"
window = { days_before = 7, days_after = 1 }

[[secret_bound]]
kinds = ["spip", "pjj"]

[[retention]]
category = "identite"
duration = "P6M"
from = "measure_ended"
article = "art-1"

[[retention]]
category = "justice"
duration = "P6M"
from = "measure_ended"
article = "art-1"

[[retention]]
category = "sante"
duration = "P3M"
from = "case_closed"
article = "art-2"

[membership]
coordinator_kind = "commune"
'''

# The same charter in format 2: lawful basis and the young person's accord stated apart.
SMALL2 = '''\
# Charte d'exemple au format 2
[charter]
id = "charte-test"
format = 2
version = 2
title = "Charte de test"
effective = 2026-01-01
default_article = "art-1"
secret_article = "art-2"
consent_article = "art-3"

[[articles]]
id = "art-1"
title = "Information strictement nécessaire"
text = """Seules les informations strictement nécessaires sont échangées."""

[[articles]]
id = "art-2"
title = "Secret partagé et infractions"
text = "Les informations secrètes ne circulent qu'entre professionnels astreints (RGPD art. 10)."

[[articles]]
id = "art-3"
title = "Accord du jeune"
text = "L'accord du jeune est requis pour les informations qui le prévoient."

[[consent_categories]]
id = "identite"
label_fr = "Votre identité"
label_en = "Your identity"
article = "art-3"

[[consent_categories]]
id = "sante"
label_fr = "Une orientation vers des soins, jamais de diagnostic"
label_en = "A referral to care, never a diagnosis"
article = "art-3"

[[fields]]
id = "identite.prenom"
label_fr = "Prénom"
label_en = "First name"
category = "identite"
tier = "e2e"
secrecy = "confidentiel"
basis = "CSI L.132-5"
accord = "identite"
article = "art-1"

[[fields]]
id = "identite.date_naissance"
label_fr = "Date de naissance"
label_en = "Date of birth"
category = "identite"
tier = "hub"
secrecy = "confidentiel"
basis = "CSI L.132-5"
accord = "identite"
article = "art-3"

[[fields]]
id = "justice.date_sortie"
label_fr = "Date de sortie prévisible"
label_en = "Expected release date"
category = "justice"
tier = "hub"
secrecy = "confidentiel"
basis = "CSI L.132-5"
offence = true
article = "art-2"

[[fields]]
id = "sante.orientation"
label_fr = "Orientation santé"
label_en = "Health referral"
category = "sante"
tier = "e2e"
secrecy = "secret"
basis = "CSP L.1110-4"
accord = "sante"
article = "art-2"

[[fields]]
id = "sante.diagnostic"
label_fr = "Diagnostic"
label_en = "Diagnosis"
category = "sante"
tier = "e2e"
secrecy = "interdit"
article = "art-2"

[[purposes]]
id = "suivi_parcours"
label_fr = "Suivi du parcours"
label_en = "Path follow-up"
article = "art-1"

[[publish]]
id = "pub-justice"
kinds = ["spip", "pjj"]
fields = ["identite.*", "justice.*", "sante.orientation"]
article = "art-1"

[[view]]
id = "view-referent"
roles = ["referent"]
kinds = ["spip", "pjj"]
group_member = false
purposes = ["suivi_parcours"]
fields = ["identite.*", "justice.date_sortie"]
article = "art-1"

[[view]]
id = "view-secret"
roles = ["referent"]
kinds = ["spip"]
group_member = false
purposes = ["suivi_parcours"]
fields = ["sante.orientation"]
article = "art-2"

[[secret_bound]]
kinds = ["spip", "pjj"]

[[retention]]
category = "identite"
duration = "P6M"
from = "measure_ended"
article = "art-1"

[[retention]]
category = "justice"
duration = "P6M"
from = "measure_ended"
article = "art-1"

[[retention]]
category = "sante"
duration = "P3M"
from = "case_closed"
article = "art-2"

[consent]
birth_date_field = "identite.date_naissance"
parents_for_minors = true
notice_version = "notice-test-1"

[membership]
coordinator_kind = "commune"
grace = "P30D"
'''
