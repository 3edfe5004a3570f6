using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Asterism.Cli.Tests;

/// <summary>
/// Checks that what a README names exists in the repository, so a README cannot silently drift from the code. The
/// rules (each problem is reported with the README and the name):
/// <list type="number">
/// <item>A path starting with <c>src/</c>, <c>tests/</c>, <c>bench/</c> or <c>docs/</c>, anywhere in the text (code
/// blocks too), names an existing file or directory (or a <c>.cs</c> file without its extension; <c>*</c> matches
/// within one folder and must match something).</item>
/// <item>A Markdown file named anywhere (<c>X.md</c>, bare or with a path) exists: bare names somewhere in the
/// repository, paths relative to the README or the repository root. Design notes outside the repository do not
/// count: a reader has only the repository.</item>
/// <item>A link target that is not a URL or an anchor exists relative to the README and stays inside the repository.</item>
/// <item>A code span that is a source file name (<c>Program.cs</c>, <c>recover.proto</c>, …) names a file somewhere
/// in the repository; a code span <c>Folder/Name</c> or <c>Folder/</c> of capitalised segments resolves relative to
/// the README's directory or to a test project (READMEs cite a test folder after naming its project), as a directory,
/// a file, or a <c>.cs</c> file.</item>
/// <item>A code span that is a code name — dotted capitalised identifiers, optionally with type arguments and a call's
/// parentheses, e.g. <c>StateDisk.TryUnlock(key)</c> or <c>Action&lt;AtlsServerOptions&gt;</c> — names only things
/// declared in the repository's C# or proto sources (a type, member, enum member, namespace, record parameter, proto
/// message, service or rpc, or a string literal that is one identifier, such as a log reason). Checked are the identifiers that look like .NET names: the part before the first
/// underscore starts with a capital and has a lower-case letter (<c>TPM2_Startup</c> and <c>SSL</c> are not checked,
/// <c>Recover_TamperedNodeRecord_Refused…</c> is). Names that are deliberately someone else's (.NET, gRPC, OpenSSL,
/// Constellation) are in <see cref="External"/>.</item>
/// </list>
/// Prose outside code spans is not checked except for rules 1–3.
/// </summary>
public sealed class ReadmeReferences
{
    /// <summary>Names READMEs cite on purpose that belong to others: .NET and ASP.NET Core, gRPC, OpenSSL, third-party packages.</summary>
    public static readonly IReadOnlySet<string> External = new HashSet<string>(StringComparer.Ordinal)
    {
        // .NET base library and ASP.NET Core
        "System", "Runtime", "Intrinsics", "X86", "Action", "ArgumentException", "AsnWriter", "BigInteger", "ModPow", "CopyWithPrivateKey", "CryptographicOperations",
        "FixedTimeEquals", "ECDsaOpenSsl", "HttpContext", "HttpRequestException", "InvalidOperationException",
        "ITlsConnectionFeature", "ITlsHandshakeFeature", "LocalCertificateSelectionCallback", "Memory", "Process",
        "SemaphoreSlim", "SslStream", "SslStreamCertificateContext", "SslCertificateTrust", "CreateForX509Collection",
        "UseHttps", "X509Certificate2", "X509Chain", "X509ChainTrustMode", "CustomRootTrust", "ClientCertificateRequired",
        "ConnectCallback", "LoggerMessage", "ConnectionClosed",
        // gRPC: status codes and types
        "GrpcChannel", "RpcException", "ServerCallContext", "StatusCode", "Internal", "InvalidArgument", "PermissionDenied",
        "MaxReceiveMessageSize",
        // Konscious.Security.Cryptography.Argon2 (the Argon2 package)
        "Konscious", "Security", "Cryptography", "Argon2",
        // Microsoft.Extensions.TimeProvider.Testing (the fake clock package)
        "Microsoft", "Extensions", "TimeProvider", "Testing",
        // dotnet-etcd (the etcd client package), the etcd v3 API's RPC names, Process.WaitForExit
        "EtcdClient", "MemberPromote", "MemberList", "WaitForExit",
    };

    private static readonly Regex RepoPath = new(@"(?<![\w./-])(?:src|tests|bench|docs)/[\w.*/-]*", RegexOptions.Compiled);
    private static readonly Regex MarkdownFile = new(@"(?<![\w./*-])[\w./*-]*[\w-]\.md\b", RegexOptions.Compiled);
    private static readonly Regex Link = new(@"\[[^\]\n]*\]\(([^)\s]+)\)", RegexOptions.Compiled);
    private static readonly Regex Fence = new(@"^```.*?^```", RegexOptions.Compiled | RegexOptions.Singleline | RegexOptions.Multiline);
    private static readonly Regex CodeSpan = new(@"`([^`\n]+)`", RegexOptions.Compiled);
    private static readonly Regex SourceFileName = new(@"^[\w.-]+\.(?:cs|proto|md|csproj|props|slnx|sh)$", RegexOptions.Compiled);
    private static readonly Regex FolderName = new(@"^[A-Z]\w*(?:/[A-Z][\w.]*)*/?$", RegexOptions.Compiled);
    private static readonly Regex CodeName = new(@"^[A-Z]\w*(?:\.[A-Z]\w*)*(?:<[\w, .<>]+>)?$", RegexOptions.Compiled);
    private static readonly Regex Word = new(@"\w+", RegexOptions.Compiled);
    private static readonly Regex Identifier = new(@"^[A-Za-z_]\w*$", RegexOptions.Compiled);

    private readonly string _root;
    private readonly HashSet<string> _fileNames;
    private readonly HashSet<string> _declared;

    private ReadmeReferences(string root, HashSet<string> fileNames, HashSet<string> declared)
    {
        _root = root;
        _fileNames = fileNames;
        _declared = declared;
    }

    /// <summary>The repository root: the directory above the test binaries that holds Asterism.slnx.</summary>
    public static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Asterism.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Asterism.slnx above {AppContext.BaseDirectory}");
    }

    /// <summary>Every file of the repository's work tree, without build output and .git.</summary>
    public static IEnumerable<string> RepositoryFiles(string root)
    {
        var pending = new Stack<string>([root]);
        while (pending.Count > 0)
        {
            var dir = pending.Pop();
            foreach (var sub in Directory.EnumerateDirectories(dir))
            {
                if (Path.GetFileName(sub) is not ("bin" or "obj" or ".git" or "TestResults" or "BenchmarkDotNet.Artifacts"))
                {
                    pending.Push(sub);
                }
            }
            foreach (var file in Directory.EnumerateFiles(dir))
            {
                yield return file;
            }
        }
    }

    /// <summary>Indexes the repository: file names and every name declared in its C# and proto sources.</summary>
    public static ReadmeReferences Load(string root)
    {
        var files = RepositoryFiles(root).ToList();
        var declared = new HashSet<string>(StringComparer.Ordinal);
        foreach (var file in files.Where(f => f.EndsWith(".cs", StringComparison.Ordinal)))
        {
            var tree = CSharpSyntaxTree.ParseText(File.ReadAllText(file), new CSharpParseOptions(LanguageVersion.Preview));
            foreach (var node in tree.GetRoot().DescendantNodes())
            {
                switch (node)
                {
                    case BaseTypeDeclarationSyntax type:
                        declared.Add(type.Identifier.ValueText);
                        if (type is TypeDeclarationSyntax { ParameterList: { } primary })
                        {
                            // Record (and primary-constructor) parameters: positional records make them properties.
                            declared.UnionWith(primary.Parameters.Select(p => p.Identifier.ValueText));
                        }
                        break;
                    case DelegateDeclarationSyntax d: declared.Add(d.Identifier.ValueText); break;
                    case MethodDeclarationSyntax m: declared.Add(m.Identifier.ValueText); break;
                    case PropertyDeclarationSyntax p: declared.Add(p.Identifier.ValueText); break;
                    case EventDeclarationSyntax e: declared.Add(e.Identifier.ValueText); break;
                    case EnumMemberDeclarationSyntax e: declared.Add(e.Identifier.ValueText); break;
                    case LocalFunctionStatementSyntax f: declared.Add(f.Identifier.ValueText); break;
                    case VariableDeclaratorSyntax { Parent.Parent: BaseFieldDeclarationSyntax } v: declared.Add(v.Identifier.ValueText); break;
                    case BaseNamespaceDeclarationSyntax ns: declared.UnionWith(ns.Name.ToString().Split('.')); break;
                    // A string that is one identifier is a name too: log reasons ("NoNonce"), schemes ("Bearer").
                    case LiteralExpressionSyntax { Token.ValueText: var value } literal when literal.IsKind(SyntaxKind.StringLiteralExpression) && Identifier.IsMatch(value):
                        declared.Add(value);
                        break;
                    default: break;
                }
            }
        }
        var protoDeclaration = new Regex(@"\b(?:message|service|rpc|enum)\s+(\w+)");
        foreach (var file in files.Where(f => f.EndsWith(".proto", StringComparison.Ordinal)))
        {
            declared.UnionWith(protoDeclaration.Matches(File.ReadAllText(file)).Select(m => m.Groups[1].Value));
        }
        return new ReadmeReferences(root, files.Select(Path.GetFileName).ToHashSet(StringComparer.Ordinal)!, declared);
    }

    /// <summary>Every README.md of the repository.</summary>
    public IEnumerable<string> Readmes() =>
        RepositoryFiles(_root).Where(f => Path.GetFileName(f) == "README.md").Order(StringComparer.Ordinal);

    /// <summary>The problems of one README: each names what does not exist, as "README: kind `name`".</summary>
    public IReadOnlyList<string> Check(string readmePath, string text)
    {
        var problems = new List<string>();
        var dir = Path.GetDirectoryName(Path.GetFullPath(readmePath))!;
        var where = Path.GetRelativePath(_root, readmePath);
        void Problem(string what, string name) => problems.Add($"{where}: {what} `{name}` does not exist");

        foreach (Match match in RepoPath.Matches(text))
        {
            var path = match.Value.TrimEnd('.');
            if (!PathExists(_root, path))
            {
                Problem("path", path);
            }
        }
        foreach (Match match in MarkdownFile.Matches(text))
        {
            var name = match.Value;
            var found = name.Contains('/') ? InsideRepository(dir, name) || InsideRepository(_root, name) : _fileNames.Contains(name);
            if (!found)
            {
                Problem("Markdown file", name);
            }
        }
        var prose = Fence.Replace(text, "");
        foreach (Match match in Link.Matches(CodeSpan.Replace(prose, "")))
        {
            var target = match.Groups[1].Value;
            if (target.StartsWith('#') || target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
            {
                continue;
            }
            var path = target.Split('#')[0];
            var full = Path.GetFullPath(Path.Combine(dir, path));
            if (!full.StartsWith(_root + Path.DirectorySeparatorChar, StringComparison.Ordinal) || !(File.Exists(full) || Directory.Exists(full)))
            {
                Problem("link target", target);
            }
        }
        foreach (Match match in CodeSpan.Matches(prose))
        {
            var span = match.Groups[1].Value.Trim();
            if (SourceFileName.IsMatch(span))
            {
                if (!_fileNames.Contains(span))
                {
                    Problem("file", span);
                }
                continue;
            }
            if (span.Contains('/'))
            {
                if (FolderName.IsMatch(span) && !PathExists(dir, span) && !TestProjects().Any(project => PathExists(project, span)))
                {
                    Problem("path", span);
                }
                continue;
            }
            var head = span.Split('(')[0];
            if (head.Length == span.Length || span.EndsWith(')'))
            {
                if (CodeName.IsMatch(head))
                {
                    foreach (Match word in Word.Matches(head))
                    {
                        if (LooksLikeDotNetName(word.Value) && !_declared.Contains(word.Value) && !External.Contains(word.Value))
                        {
                            Problem("code name", word.Value);
                        }
                    }
                }
            }
        }
        return problems;
    }

    private IEnumerable<string> TestProjects() =>
        Directory.EnumerateDirectories(Path.Combine(_root, "tests"));

    /// <summary>PascalCase before the first underscore: <c>StateDisk</c>, <c>Recover_Tampered_Refused</c>; not <c>SSL</c>, <c>TPM2_Startup</c>, <c>byte</c>.</summary>
    public static bool LooksLikeDotNetName(string word)
    {
        var head = word.Split('_')[0];
        return head.Length > 0 && char.IsAsciiLetterUpper(head[0]) && head.Any(char.IsAsciiLetterLower);
    }

    /// <summary>A path that exists and stays inside the repository (what lies next to a checkout differs between machines).</summary>
    private bool InsideRepository(string baseDir, string path)
    {
        var full = Path.GetFullPath(Path.Combine(baseDir, path));
        return full.StartsWith(Path.GetFullPath(_root).TrimEnd('/') + "/", StringComparison.Ordinal) && PathExists(baseDir, path);
    }

    private static bool PathExists(string baseDir, string path)
    {
        path = path.TrimEnd('/');
        if (path.Length == 0)
        {
            return Directory.Exists(baseDir);
        }
        if (!path.Contains('*'))
        {
            var full = Path.Combine(baseDir, path);
            return File.Exists(full) || Directory.Exists(full) || File.Exists(full + ".cs");
        }
        // A glob: each '*' stands for one path segment's worth of characters; it must match at least one entry.
        var candidates = new List<string> { baseDir };
        foreach (var segment in path.Split('/'))
        {
            var next = new List<string>();
            foreach (var candidate in candidates.Where(Directory.Exists))
            {
                if (segment.Contains('*'))
                {
                    next.AddRange(Directory.EnumerateFileSystemEntries(candidate, segment).Where(e => Path.GetFileName(e) is not ("bin" or "obj")));
                }
                else if (Path.Combine(candidate, segment) is var entry && (File.Exists(entry) || Directory.Exists(entry)))
                {
                    next.Add(entry);
                }
            }
            candidates = next;
        }
        return candidates.Count > 0;
    }
}
