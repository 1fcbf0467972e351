// setResources / parseResources / parseMemory / readResourceForm, and the header reading they
// rest on (stepName), against the header rules of nbflow/header.py.

import {
  isStepCell,
  parseMemory,
  parseResources,
  readResourceForm,
  setResources,
  stepName
} from '../resources';

const BODY = 'forest = RandomForestClassifier().fit(X, y)\nprint(forest)';

describe('stepName', () => {
  it.each([
    ['%%step load\nx = 1', 'load'],
    ['\n\n%%step load\nx = 1', 'load'],
    ['  %%step   load  \nx = 1', 'load'],
    ['%%resources memory=4G\n%%step forest\nx', 'forest'],
    ['%%step logreg --foreach C in Cs\n', 'logreg'],
    ['%%step --retry 2 --timeout=5 late\n', 'late'],
    ['%%step --foreach C in [1, 2, 3] --force mid\n', 'mid'],
    ['%%step --force\n', null],
    ['%%steps load\n', null],
    ['x = 1\n%%step load\n', null],
    ['%%step\tload', 'load'],
    ['', null],
    ['%%resources memory=4G\nx = 1', null]
  ])('%j -> %j', (source, name) => {
    expect(stepName(source)).toBe(name);
  });

  it('stops the header at the first blank line', () => {
    expect(stepName('%%resources cpus=1\n\n%%step load\n')).toBeNull();
    expect(isStepCell('%%resources cpus=1\n\n%%step load\n')).toBe(false);
    expect(isStepCell('%%step load')).toBe(true);
  });
});

describe('parseResources', () => {
  it('reads the %%resources line', () => {
    expect(
      parseResources(
        `%%step forest\n%%resources memory=64G cpus=8 gpus=1\n${BODY}`
      )
    ).toEqual({ memory: '64G', cpus: 8, gpus: 1 });
  });

  it('reads it above the %%step line too, and fractional cpus', () => {
    expect(parseResources('%%resources cpus=0.5\n%%step s\nx')).toEqual({
      cpus: 0.5
    });
  });

  it('is empty without a line, and ignores lines in the body', () => {
    expect(parseResources(`%%step forest\n${BODY}`)).toEqual({});
    expect(parseResources('%%step s\nx = 1\n%%resources cpus=4')).toEqual({});
    expect(parseResources('plain = 1')).toEqual({});
  });

  it('skips tokens it cannot read', () => {
    expect(
      parseResources('%%step s\n%%resources junk cpus=x memory= gpus=2\n')
    ).toEqual({ gpus: 2 });
  });
});

describe('setResources', () => {
  it('inserts a line right below the %%step line', () => {
    const source = `%%step forest --retry 2\n${BODY}`;
    expect(setResources(source, { memory: '16G', cpus: 4 })).toBe(
      `%%step forest --retry 2\n%%resources memory=16G cpus=4\n${BODY}`
    );
  });

  it('rewrites an existing line in place, keeping key order and other header lines', () => {
    const source = `%%resources cpus=1 memory=4G\n%%step forest\n${BODY}`;
    expect(setResources(source, { memory: '64GiB', gpus: 1 })).toBe(
      `%%resources cpus=1 memory=64GiB gpus=1\n%%step forest\n${BODY}`
    );
  });

  it('drops keys set to empty and keeps keys not given', () => {
    const source = `%%step s\n%%resources memory=4G cpus=2 gpus=1\n${BODY}`;
    expect(setResources(source, { cpus: undefined, memory: '' })).toBe(
      `%%step s\n%%resources gpus=1\n${BODY}`
    );
    expect(setResources(source, { gpus: null, cpus: NaN })).toBe(
      `%%step s\n%%resources memory=4G\n${BODY}`
    );
  });

  it('removes the line when nothing is left', () => {
    const source = `%%step s\n%%resources memory=4G\n${BODY}`;
    expect(
      setResources(source, {
        memory: undefined,
        cpus: undefined,
        gpus: undefined
      })
    ).toBe(`%%step s\n${BODY}`);
  });

  it('changes nothing when nothing is asked and there is no line', () => {
    const source = `%%step s\n${BODY}`;
    expect(setResources(source, { memory: '', cpus: undefined })).toBe(source);
    expect(setResources(source, {})).toBe(source);
  });

  it('never touches the body, even a %%resources-looking line in it', () => {
    const source = '%%step s\nx = """\n%%resources cpus=1\n"""\n';
    expect(setResources(source, { cpus: 2 })).toBe(
      '%%step s\n%%resources cpus=2\nx = """\n%%resources cpus=1\n"""\n'
    );
  });

  it('keeps leading blank lines, indentation, CRLF and unknown tokens', () => {
    expect(setResources('\n  %%step s\r\nx\r\n', { gpus: 0 })).toBe(
      '\n  %%step s\r\n  %%resources gpus=0\r\nx\r\n'
    );
    expect(
      setResources('%%step s\n%%resources cores=3 cpus=1\nx', { cpus: 2 })
    ).toBe('%%step s\n%%resources cores=3 cpus=2\nx');
  });

  it('collapses a duplicated key into one', () => {
    expect(
      setResources('%%step s\n%%resources cpus=1 cpus=2\nx', { cpus: 3 })
    ).toBe('%%step s\n%%resources cpus=3\nx');
  });

  it('writes memory without spaces, numbers as numbers', () => {
    expect(setResources('%%step s\nx', { memory: ' 64 GB ', cpus: 0.5 })).toBe(
      '%%step s\n%%resources memory=64GB cpus=0.5\nx'
    );
  });

  it('round-trips with parseResources', () => {
    const out = setResources(`%%step s\n${BODY}`, {
      memory: '2GiB',
      cpus: 1.5,
      gpus: 2
    });
    expect(parseResources(out)).toEqual({ memory: '2GiB', cpus: 1.5, gpus: 2 });
    expect(out.endsWith(BODY)).toBe(true);
  });

  it('refuses a cell that is not a step cell', () => {
    expect(() => setResources('x = 1', { cpus: 1 })).toThrow(/not a step cell/);
    expect(() => setResources('%%resources cpus=1\nx', { cpus: 1 })).toThrow(
      /not a step cell/
    );
  });
});

describe('parseMemory', () => {
  it.each([
    ['64G', 64e9],
    ['64GB', 64e9],
    ['64gb', 64e9],
    ['64GiB', 64 * 2 ** 30],
    ['64Gi', 64 * 2 ** 30],
    ['512MiB', 512 * 2 ** 20],
    ['1.5kB', 1500],
    ['2000000', 2000000],
    ['5e3', 5000],
    ['16 G', 16e9]
  ])('%s = %d bytes', (text, bytes) => {
    expect(parseMemory(text)).toBe(bytes);
  });

  it.each(['', 'lots', '64X', '-1G', '0', '64 G B x'])('refuses %j', text => {
    expect(parseMemory(text)).toBeNull();
  });
});

describe('readResourceForm', () => {
  it('gives every key, empty ones as null', () => {
    expect(readResourceForm({ memory: ' 16G ', cpus: '', gpus: '1' })).toEqual({
      update: { memory: '16G', cpus: null, gpus: 1 },
      errors: []
    });
  });

  it('names what is wrong', () => {
    const { errors } = readResourceForm({
      memory: 'big',
      cpus: '0',
      gpus: '1.5'
    });
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/memory 'big'/);
    expect(errors[1]).toMatch(/cpus '0'/);
    expect(errors[2]).toMatch(/gpus '1.5'/);
  });
});
