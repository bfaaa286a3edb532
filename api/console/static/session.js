// Who the caller is, and the controls that follow from their role.

import { h } from "./dom.js";

const ROLES = { reader: 1, operator: 2, admin: 3 };

export const session = {
  role: null,
  actor: null,
  // May the caller do what `needed` may? Controls that it may not are disabled.
  can(needed) {
    return (ROLES[this.role] || 0) >= ROLES[needed];
  },
};

// A button that runs an API call the role `needs`; disabled with a reason otherwise.
export function actionButton(label, needs, onclick, attrs = {}) {
  const allowed = session.can(needs);
  return h("button", {
    type: "button", ...attrs, disabled: !allowed || Boolean(attrs.disabled),
    title: allowed ? attrs.title : `needs the ${needs} role (you are ${session.role})`,
    dataset: { needs, ...(attrs.dataset || {}) }, onclick,
  }, label);
}

