// An RFC 4180 CSV reader for the benchmark files researchers download (AdvBench, HEx-PHI,
// StrongREJECT): fields separated by commas, records by CRLF, LF or a lone CR; a field that starts
// with a double quote runs to the matching closing quote and may hold commas, line breaks and
// doubled quotes ("" = one literal quote); a leading UTF-8 byte-order mark is dropped. Line breaks
// inside quoted fields come back as "\n" whatever the file used, so a CRLF file and an LF file give
// the same text. A quote inside an unquoted field is kept as a literal character, as Python's csv
// module and pandas read it (hand-edited files have them); text after a closing quote is an error,
// since it means the quoting is broken and guessing would silently merge or split fields.

export interface CsvRecord {
  /** The record's fields, unquoted. */
  fields: string[];
  /** 1-based line of the file on which the record starts (records with quoted line breaks span several lines). */
  line: number;
}

/** True for a record that is an empty line (one empty field), which readers skip. */
export function isBlankRecord(record: CsvRecord): boolean {
  return record.fields.length === 1 && record.fields[0] === '';
}

/**
 * Parse CSV text into records (blank lines included, as one empty field; a final line break adds
 * no record). `where` names the file in errors, which give the line and column of the problem.
 */
export function parseCsv(text: string, where = 'CSV'): CsvRecord[] {
  return [...csvRecords(text, where)];
}

/**
 * The records of CSV text one at a time, as parseCsv returns them: a reader that needs only the
 * header or the first rows stops early, and a broken row after them is never reached.
 */
export function* csvRecords(text: string, where = 'CSV'): Generator<CsvRecord, void, undefined> {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const n = text.length;
  if (n === 0) return;
  let i = 0;
  let line = 1;
  let lineStart = 0; // index of the current line's first character, for error columns
  let recordLine = 1;
  let fields: string[] = [];
  for (;;) {
    // At the start of a field.
    if (text[i] === '"') {
      const openLine = line;
      const openColumn = i - lineStart + 1;
      i++;
      let value = '';
      let chunkStart = i;
      for (;;) {
        if (i >= n) {
          throw new Error(`${where}: line ${openLine}, column ${openColumn}: the quoted field opened here never closes (expected a closing " before the end of the file; write "" for a literal quote inside a quoted field)`);
        }
        const c = text[i];
        if (c === '"') {
          value += text.slice(chunkStart, i);
          if (text[i + 1] === '"') {
            value += '"';
            i += 2;
            chunkStart = i;
            continue;
          }
          i++;
          break;
        }
        if (c === '\r' || c === '\n') {
          value += text.slice(chunkStart, i) + '\n';
          i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
          line++;
          lineStart = i;
          chunkStart = i;
          continue;
        }
        i++;
      }
      if (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
        throw new Error(`${where}: line ${line}, column ${i - lineStart + 1}: unexpected ${JSON.stringify(text[i])} after the closing quote of a quoted field (expected a comma or the end of the line; a field that starts with " must end with ", and a literal quote inside it is written "")`);
      }
      fields.push(value);
    } else {
      let j = i;
      while (j < n && text[j] !== ',' && text[j] !== '\n' && text[j] !== '\r') j++;
      fields.push(text.slice(i, j));
      i = j;
    }
    if (i >= n) {
      yield { fields, line: recordLine };
      return;
    }
    if (text[i] === ',') {
      i++;
      continue;
    }
    // End of the record.
    i += text[i] === '\r' && text[i + 1] === '\n' ? 2 : 1;
    yield { fields, line: recordLine };
    line++;
    lineStart = i;
    recordLine = line;
    fields = [];
    if (i >= n) return;
  }
}
