"""English glosses of what a message in another language asks for, for the classifier.

Most shipped examples are English; support mail often is not. The words block of the model
(:func:`~.classify._feature_union`) reads each text through :func:`glossed`, which adds the
English gloss of every phrase of :data:`GLOSSARY` the text holds, so "Könnten Sie einen
Dunkelmodus einbauen?" shares the features of "could you add …" with the English examples.

The list covers German, Spanish, Portuguese, Polish, Italian, French, Dutch, Swedish, Danish,
Norwegian, Finnish, Czech and Turkish: written by hand, a few phrases per intent (asking,
reporting a failure, wanting documentation, thanks, being away). Phrases that are also common
English words are left out, so English text is not glossed (one with a rare English word, such
as "hay", may be). Adding a language is adding its phrases to the patterns; measure it with
``benchmarks/classify.py --dev``.
"""

# ruff: noqa: RUF001 (Turkish phrases have a dotless i)
from __future__ import annotations

import re

__all__ = ["GLOSSARY", "glossed"]

GLOSSARY: dict[str, str] = {
    "doesn't work broken": "funktioniert nicht|geht nicht|klappt nicht|no funciona|não funciona|"
    "nao funciona|nie działa|non funziona|ne fonctionne pas|ne marche pas|werkt niet|"
    "fungerar inte|funkar inte|virker ikke|fungerer ikke|ei toimi|nefunguje|nefungují|çalışmıyor|"
    "çalışmıyo",
    "error": r"fehler\w*|fehlermeldung|erro|errores?|błąd\w*|błęd\w*|errore|erreur\w*|foutmelding|"
    r"felmeddelande\w*|fejl\w*|feilmelding\w*|virhe\w*|chyb\w*|hata\w*",
    "since the update": "seit (dem|der) (update|aktualisierung)|desde la (última )?actualización|"
    "desde a (última )?atualização|od (ostatniej )?aktualizacji|dall'aggiornamento|"
    "depuis la mise à jour|sedan (uppdateringen|senaste uppdateringen)|"
    "siden (opdateringen|oppdateringen)|päivityksen jälkeen|od (poslední )?aktualizace|"
    "güncellemeden (sonra|beri)",
    "bug crash": r"absturz\w*|stürzt\w*|se cuelga|se bloquea|trava|travando|zawiesza|si blocca|"
    r"plante|kraschar|krasjer|hänger sig|kaatuu|jumittaa|padá|spadne|çöküyor|donuyor",
    "is there": "gibt es|hay|existe|há (algum|alguma|um|uma)|czy (jest|są|istnieje)|c'è|ci sono|"
    "y a-t-il|il y a|est-ce qu'il y a|finns det|findes der|finnes det|onko teillä|existuje|var mı",
    "could you": r"könnten sie|könnt ihr|können sie|podrían|podrías|pueden|poderiam|podem|podiam|"
    r"czy moglibyście|czy możecie|czy można|potreste|potete|pourriez-vous|pourriez vous|"
    r"pouvez-vous|kunnen jullie|zou het mogelijk|kan ni|skulle ni kunna|kunne I|kan dere|"
    r"kunne dere|voisitteko|voitteko|mohli byste|můžete|\w+(?:ebilir|abilir) misiniz",
    "would be great feature": "wäre (es )?(toll|super|schön|gut|praktisch|hilfreich)|"
    "sería (genial|útil|bueno)|seria (ótimo|legal|útil|bom)|"
    "byłoby (super|świetnie|fajnie|dobrze)|sarebbe (utile|bello|fantastico)|"
    "ce serait (bien|génial|utile)|wäre es möglich|sería posible|seria possível|"
    "sarebbe possibile|serait-il possible|det vore (bra|toppen|smidigt|fint|super)|"
    "det ville være (godt|fedt|dejligt|super|rart)|det hadde vært (fint|bra|supert|flott)|"
    "olisi (hienoa|kätevää|hyvä|mahtavaa)|bylo by (super|skvělé|fajn|dobré)|harika olur|"
    "çok iyi olur",
    "add": "hinzufügen|einbauen|einführen|ergänzen|añadir|agregar|incluir|adicionar|acrescentar|"
    "dodać|dodanie|aggiungere|ajouter|toevoegen|lägga till|tilføje|legge til|lisätä|lisäisitte|"
    "přidat|eklemek|ekleyin|eklenmesi|eklenebilir",
    "plan roadmap": "geplant|planen sie|planean|planejam|planujecie|planowane|prevedete|prévoyez|"
    "prévu|planerar ni|planlægger I|planlegger dere|suunnitteilla|plánujete|planlıyor musunuz",
    "option": r"möglichkeit|opción|opção|opcja|opzione|possibilité|möjlighet\w*|mulighed\w*|"
    r"mulighet\w*|mahdollisuu\w*|možnost\w*|seçenek\w*",
    "how can i": "wie kann ich|wie können wir|cómo puedo|como puedo|cómo se|como posso|como faço|"
    "jak mogę|jak można|come posso|come si|comment puis-je|comment faire|hoe kan ik|"
    "hur (kan|gör) (jag|man|vi)|hvordan (kan|gør|gjør) (jeg|man|vi)|"
    "miten (voin|saan|teen|voimme)|jak (mohu|můžu|můžeme|nastavím)|nasıl",
    "documentation guide article": r"anleitung\w*|handbuch|dokumentation|doku|documentación|"
    r"documentação|instrukcj\w*|dokumentacj\w*|poradnik|guida|documentazione|artikel|artículo|"
    r"artigo|artykuł|articolo|manuale|manuales|manuais|användarguide\w*|instruktion\w*|"
    r"hjälpartikel\w*|vejledning\w*|veiledning\w*|bruksanvisning\w*|brugervejledning\w*|ohje\w*|"
    r"käyttöohje\w*|návod\w*|příručk\w*|dokumentac\w*|kılavuz\w*|dokümantasyon\w*",
    "thanks": r"danke\w*|vielen dank|gracias|obrigad[oa]|dziękuję|dzięki|grazie|merci|bedankt|"
    r"tack så mycket|tusen tack|takk|mange tak|kiitos|děkuji|díky|teşekkür\w*|sağ ?ol\w*",
    "price plan": r"preis\w*|rabatt|precio|descuento|preço|desconto|cena|rabat|prezzo|sconto|prix|"
    r"remise|priset|priser|prisen|hinta|hinnat|hinnoittelu|fiyat\w*|indirim\w*",
    "invoice": r"rechnung\w*|factura\w*|fatura\w*|faktur\w*|fattur\w*|facture\w*|lasku\w*",
    "account cancel": r"kündig\w*|cancelar|anular|anulować|rezygn\w*|disdire|annullare|résilier|"
    r"annuler|opzeggen|säga upp|opsige|si opp|irtisanoa|peruuttaa|zrušit|iptal\w*",
    "out of office": r"abwesend|außer haus|urlaub|vacaciones|férias|urlop\w*|ferie|congé\w*|"
    r"frånvarande|på semester|lomalla|dovolen\w*|izindeyim|ofis dışında\w*",
    "wrong": r"falsch\w*|incorrect[oa]s?|errad[oa]s?|błędn\w*|sbagliat\w*|incorrecte\w*|erroné\w*|"
    r"verkeerd|fel|forkert\w*|feil|väärä\w*|špatn\w*|yanlış\w*",
    "missing": r"fehlt|fehlen|falta|faltan|brak\w*|manca|mancano|manque|saknas|mangler|puuttuu|"
    r"chybí|eksik\w*",
    "why": "warum|wieso|por qué|por que|porque|dlaczego|perché|pourquoi|waarom|varför|hvorfor|"
    "miksi|proč|neden|niye",
    "where": "wo|dónde|onde|gdzie|dove|où|waar|hvor|missä|mistä|kde|nerede",
    "is it possible": "ist es möglich|es posible|é possível|e possível|czy to możliwe|"
    "czy jest możliwe|è possibile|est-il possible|est-ce possible|is het mogelijk|är det möjligt|"
    "går det att|er det muligt|er det mulig|onko mahdollista|je možné|mümkün mü",
    "i would like": "ich möchte|ich würde gerne|wir möchten|wir würden gerne|quisiera|"
    "me gustaría|nos gustaría|quisiéramos|gostaria|gostaríamos|chciałbym|chciałabym|chcielibyśmy|"
    "vorrei|vorremmo|je voudrais|nous voudrions|ik wil graag|wij willen graag|jag skulle vilja|"
    "vi skulle vilja|jeg vil gerne|vi vil gerne|jeg vil gjerne|vi vil gjerne|haluaisin|"
    "haluaisimme|chtěl bych|chtěla bych|chtěli bychom|istiyorum|istiyoruz",
    "please": "bitte|por favor|proszę|per favore|s'il vous plaît|svp|alstublieft|snälla|vänligen|"
    "venligst|vennligst|prosím|lütfen",
    "we need": "wir brauchen|brauchen wir|necesitamos|precisamos|potrzebujemy|abbiamo bisogno|"
    "nous avons besoin|wij hebben .{0,20}nodig|vi behöver|vi har brug for|vi trenger|tarvitsemme|"
    "potřebujeme|ihtiyacımız var",
    "can i": "kann ich|können wir|puedo|podemos|posso|czy mogę|czy możemy|possiamo|puis-je|"
    "pouvons-nous|kan ik|kan jag|kan vi|kan jeg|voinko|voimmeko|mohu|můžu|yapabilir miyim",
    "help": r"hilfe|ayuda|ajuda|pomoc\w*|aiuto|aide|hulp|hjälp|hjælp|hjelp|apua|yardım\w*",
    "still": "immer noch|noch immer|todavía|todavia|sigue|ainda|nadal|wciąż|ancora|toujours|"
    "nog steeds|fortfarande|stadig|stadigvæk|fortsatt|edelleen|vieläkin|pořád|stále|hala|hâlâ",
    "since": "seit|desde|depuis|sinds|sedan|siden|lähtien|beri",
    "login password": r"anmeld\w*|passwort|kennwort|contraseña|iniciar sesión|senha|hasło|"
    r"zalogować|logowan\w*|accedere|mot de passe|wachtwoord|logga in|lösenord|log ind|adgangskode|"
    r"logge inn|passord|kirjautu\w*|salasana\w*|přihlás\w*|heslo|şifre\w*|parola\w*",
}
"""Each English gloss, and the phrases (a regular expression, matched as whole words, ignoring
case) that it glosses."""

_PATTERNS = [
    (re.compile(rf"\b(?:{pattern})(?!\w)", re.IGNORECASE), gloss)
    for gloss, pattern in GLOSSARY.items()
]


def glossed(text: str) -> str:
    """``text`` in lower case, then a line of the English glosses (:data:`GLOSSARY`) of the
    non-English phrases in it, each once, in glossary order."""
    glosses = [gloss for pattern, gloss in _PATTERNS if pattern.search(text)]
    return text.lower() + "\n" + " ".join(glosses) if glosses else text.lower()
