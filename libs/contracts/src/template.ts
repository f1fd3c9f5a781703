// The prompt-template grammar, written once: the api sizes and renders templates with it when it checks a batch, and a
// worker renders a stored item's row with it (a template batch stores its template once and each item's row, not each
// rendered prompt). Stored rows outlive a deploy, so the grammar lives here beside the job wire type.

/** `{name}`: a placeholder, filled from the row's field of that name. */
export const TEMPLATE_PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export type TemplateRow = Record<string, string | number | boolean>;

/** The names a template uses, in order, repeats included. */
export function templatePlaceholders(text: string): string[] {
  return [...text.matchAll(TEMPLATE_PLACEHOLDER)].map((match) => match[1]);
}

/** A row's value for a placeholder: own fields only, so `{constructor}` never reaches Object.prototype; null if absent. */
export function templateValue(row: TemplateRow, name: string): string | null {
  return Object.hasOwn(row, name) ? String(row[name]) : null;
}

/** The prompt a template renders to for one row; throws naming a field the row lacks. */
export function renderTemplate(text: string, row: TemplateRow): string {
  return text.replace(TEMPLATE_PLACEHOLDER, (_, name: string) => {
    const value = templateValue(row, name);
    if (value === null) throw new Error(`the row has no field ${name}, which the template uses`);
    return value;
  });
}

/** The fields of a row that a template uses (what a stored item keeps of its row). */
export function usedFields(text: string, row: TemplateRow): TemplateRow {
  const used: TemplateRow = {};
  for (const name of new Set(templatePlaceholders(text))) if (Object.hasOwn(row, name)) used[name] = row[name];
  return used;
}
