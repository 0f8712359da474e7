// The RFC 4180 reader against hand-written expected records: quoting, doubled quotes, line breaks
// and commas inside quotes, CRLF / LF / CR record ends, a byte-order mark, and the errors for broken
// quoting (which must name the line and column).
import { describe, expect, it } from 'vitest';
import { isBlankRecord, parseCsv } from '../../lib/datasets/index.js';

const fields = (text: string) => parseCsv(text).map((r) => r.fields);

describe('parseCsv', () => {
  it('splits plain records and fields, with or without a final line break', () => {
    expect(parseCsv('goal,target\na,b\n')).toEqual([{ fields: ['goal', 'target'], line: 1 }, { fields: ['a', 'b'], line: 2 }]);
    expect(fields('goal,target\na,b')).toEqual([['goal', 'target'], ['a', 'b']]);
    expect(fields('')).toEqual([]);
    expect(fields('a,\n,b\n,\n')).toEqual([['a', ''], ['', 'b'], ['', '']]);
  });

  it('reads quoted fields with commas, doubled quotes and line breaks; quoted line breaks come back as \\n', () => {
    const text = 'id,text\n1,"Sure, here is"\n2,"say ""hi"""\n3,"two\nlines"\n4,"crlf\r\ninside"\n5,""\n';
    expect(parseCsv(text)).toEqual([
      { fields: ['id', 'text'], line: 1 },
      { fields: ['1', 'Sure, here is'], line: 2 },
      { fields: ['2', 'say "hi"'], line: 3 },
      { fields: ['3', 'two\nlines'], line: 4 },
      { fields: ['4', 'crlf\ninside'], line: 6 },
      { fields: ['5', ''], line: 8 },
    ]);
  });

  it('accepts CRLF, LF and lone CR record ends and drops a byte-order mark', () => {
    const expected = [['goal', 'target'], ['a, b', 'c']];
    expect(fields('goal,target\r\n"a, b",c\r\n')).toEqual(expected);
    expect(fields('\uFEFFgoal,target\n"a, b",c')).toEqual(expected);
    expect(fields('goal,target\r"a, b",c\r')).toEqual(expected);
  });

  it('keeps blank lines as one empty field (readers skip them) and counts lines across them', () => {
    const records = parseCsv('a\n\nb\n"x\ny"\nc\n');
    expect(records).toEqual([
      { fields: ['a'], line: 1 }, { fields: [''], line: 2 }, { fields: ['b'], line: 3 }, { fields: ['x\ny'], line: 4 }, { fields: ['c'], line: 6 },
    ]);
    expect(records.map(isBlankRecord)).toEqual([false, true, false, false, false]);
  });

  it('keeps a quote inside an unquoted field as a literal character, as Python csv does', () => {
    expect(fields('say "hi" now,x\n')).toEqual([['say "hi" now', 'x']]);
  });

  it('names the line and column of broken quoting', () => {
    expect(() => parseCsv('a,b\nc,"open\nstill open', 'f.csv')).toThrow(/^f\.csv: line 2, column 3: the quoted field opened here never closes/);
    expect(() => parseCsv('a,b\n"ab"c,d\n', 'f.csv')).toThrow(/^f\.csv: line 2, column 5: unexpected "c" after the closing quote/);
    expect(() => parseCsv('a\n"x\ny" z\n', 'f.csv')).toThrow(/^f\.csv: line 3, column 3: unexpected " "/);
  });
});
