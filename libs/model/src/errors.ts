/** A checkpoint or option problem the user must fix; the message names the file, tensor or field. */
export class ModelInputError extends Error {
  override readonly name = 'ModelInputError';
}
