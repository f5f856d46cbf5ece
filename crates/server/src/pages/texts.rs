//! What the pages say, in each language they are written in. A struct per language, so a
//! missing sentence is a compile error rather than a blank on a page.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    De,
    Fr,
}

impl Language {
    pub fn of(language: &str) -> Option<Self> {
        match language {
            "en" => Some(Self::En),
            "de" => Some(Self::De),
            "fr" => Some(Self::Fr),
            _ => None,
        }
    }

    pub const fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::De => "de",
            Self::Fr => "fr",
        }
    }

    pub const fn texts(self) -> &'static Texts {
        match self {
            Self::En => &EN,
            Self::De => &DE,
            Self::Fr => &FR,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Texts {
    pub form_title: &'static str,
    pub form_intro: &'static str,
    pub code_label: &'static str,
    pub verify_button: &'static str,
    pub verified_title: &'static str,
    pub verified_body: &'static str,
    pub invalid_title: &'static str,
    pub invalid_body: &'static str,
    pub resend_intro: &'static str,
    pub resend_button: &'static str,
    pub already_title: &'static str,
    pub already_body: &'static str,
    pub resent_title: &'static str,
    pub resent_body: &'static str,
    pub cooldown_title: &'static str,
    /// `{seconds}` is replaced by the wait.
    pub cooldown_body: &'static str,
    pub error_title: &'static str,
    pub error_body: &'static str,
}

const EN: Texts = Texts {
    form_title: "Verify your email address",
    form_intro: "Confirm with the code from your email. It is filled in already if you opened the link.",
    code_label: "Code",
    verify_button: "Verify email address",
    verified_title: "Your email address is verified",
    verified_body: "Thank you. There is nothing more to do; you can close this page.",
    invalid_title: "This code did not work",
    invalid_body: "The code is wrong, has expired, or was replaced by a newer one. Check the code, or use the newest email you received.",
    resend_intro: "No working code? Ask for a new email.",
    resend_button: "Send a new email",
    already_title: "Already verified",
    already_body: "This email address is verified already. There is nothing more to do.",
    resent_title: "Check your inbox",
    resent_body: "If the address still needs verifying, a new email with a new code is on its way. Codes sent before it no longer work.",
    cooldown_title: "Please wait a moment",
    cooldown_body: "An email was sent a short while ago. You can ask for another one in {seconds} seconds.",
    error_title: "Something went wrong",
    error_body: "This could not be done right now. Please try again in a few minutes.",
};

const DE: Texts = Texts {
    form_title: "E-Mail-Adresse bestätigen",
    form_intro: "Bestätigen Sie mit dem Code aus Ihrer E-Mail. Wenn Sie den Link geöffnet haben, ist er bereits eingetragen.",
    code_label: "Code",
    verify_button: "E-Mail-Adresse bestätigen",
    verified_title: "Ihre E-Mail-Adresse ist bestätigt",
    verified_body: "Vielen Dank. Es ist nichts weiter zu tun; Sie können diese Seite schließen.",
    invalid_title: "Dieser Code hat nicht funktioniert",
    invalid_body: "Der Code ist falsch, abgelaufen oder wurde durch einen neueren ersetzt. Prüfen Sie den Code oder verwenden Sie die neueste E-Mail, die Sie erhalten haben.",
    resend_intro: "Kein gültiger Code? Fordern Sie eine neue E-Mail an.",
    resend_button: "Neue E-Mail senden",
    already_title: "Bereits bestätigt",
    already_body: "Diese E-Mail-Adresse ist bereits bestätigt. Es ist nichts weiter zu tun.",
    resent_title: "Sehen Sie in Ihr Postfach",
    resent_body: "Falls die Adresse noch bestätigt werden muss, ist eine neue E-Mail mit einem neuen Code unterwegs. Früher gesendete Codes gelten nicht mehr.",
    cooldown_title: "Bitte warten Sie einen Moment",
    cooldown_body: "Vor Kurzem wurde bereits eine E-Mail gesendet. Eine weitere können Sie in {seconds} Sekunden anfordern.",
    error_title: "Etwas ist schiefgegangen",
    error_body: "Das ist gerade nicht möglich. Bitte versuchen Sie es in ein paar Minuten erneut.",
};

const FR: Texts = Texts {
    form_title: "Confirmez votre adresse e-mail",
    form_intro: "Confirmez avec le code reçu par e-mail. Il est déjà saisi si vous avez ouvert le lien.",
    code_label: "Code",
    verify_button: "Confirmer l’adresse e-mail",
    verified_title: "Votre adresse e-mail est confirmée",
    verified_body: "Merci. Il n’y a plus rien à faire ; vous pouvez fermer cette page.",
    invalid_title: "Ce code n’a pas fonctionné",
    invalid_body: "Le code est erroné, a expiré ou a été remplacé par un plus récent. Vérifiez le code ou utilisez le dernier e-mail reçu.",
    resend_intro: "Pas de code valable ? Demandez un nouvel e-mail.",
    resend_button: "Envoyer un nouvel e-mail",
    already_title: "Déjà confirmée",
    already_body: "Cette adresse e-mail est déjà confirmée. Il n’y a plus rien à faire.",
    resent_title: "Consultez votre boîte de réception",
    resent_body: "Si l’adresse doit encore être confirmée, un nouvel e-mail avec un nouveau code est en route. Les codes envoyés auparavant ne sont plus valables.",
    cooldown_title: "Veuillez patienter un instant",
    cooldown_body: "Un e-mail a été envoyé il y a peu. Vous pourrez en demander un autre dans {seconds} secondes.",
    error_title: "Une erreur s’est produite",
    error_body: "Cela n’a pas été possible pour le moment. Veuillez réessayer dans quelques minutes.",
};
