using System.Collections.Concurrent;
using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>
/// Orders the tests of a scenario class that share one cluster: lower step numbers run first. Once a step failed, the
/// later steps of its class are reported as skipped ("skipped because step N … failed") instead of failing with
/// whatever the broken cluster makes of them (<see cref="StepLedger"/>, run by <see cref="StepFramework"/>); a step
/// marked <see cref="AfterFailure"/> (terminate, leak scans) runs anyway.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class StepAttribute(int order) : Attribute
{
    public int Order { get; } = order;

    /// <summary>Runs even when an earlier step of its class failed: it checks something every run must hold (cleanup, no leaks).</summary>
    public bool AfterFailure { get; init; }

    public static StepAttribute? Of(MethodInfo method) => method.GetCustomAttribute<StepAttribute>();
}

/// <summary>Test-case orderer for <see cref="StepAttribute"/> (registered for the whole assembly).</summary>
public sealed class StepOrderer : ITestCaseOrderer
{
    public const string TypeName = "Asterism.EndToEnd.Tests.Infrastructure.StepOrderer";
    public const string AssemblyName = "Asterism.EndToEnd.Tests";

    public IEnumerable<TTestCase> OrderTestCases<TTestCase>(IEnumerable<TTestCase> testCases)
        where TTestCase : ITestCase =>
        testCases.OrderBy(t => StepOf(t)).ThenBy(t => t.TestMethod.Method.Name, StringComparer.Ordinal);

    private static int StepOf(ITestCase testCase) =>
        testCase.TestMethod.Method.GetCustomAttributes(typeof(StepAttribute).AssemblyQualifiedName).FirstOrDefault()
            ?.GetConstructorArguments().OfType<int>().FirstOrDefault() ?? int.MaxValue;
}

/// <summary>
/// What one scenario class's run has seen so far, in run order: the first step that failed, and the steps that passed.
/// Every later step is skipped with a reason naming the failure, unless it runs <see cref="StepAttribute.AfterFailure"/>;
/// such a step (the leak scan) asks <see cref="Passed"/> which earlier steps left their full artefacts behind. Tests
/// without a step are never skipped.
/// </summary>
public sealed class StepLedger
{
    private static readonly ConcurrentDictionary<Type, StepLedger> ByClass = new();

    private readonly ConcurrentDictionary<int, bool> _passed = new();
    private (int Order, string Name)? _firstFailure;

    /// <summary>A fresh ledger for a run of <paramref name="testClass"/>; <see cref="Of"/> returns it from then on.</summary>
    public static StepLedger Start(Type testClass)
    {
        var ledger = new StepLedger();
        ByClass[testClass] = ledger;
        return ledger;
    }

    /// <summary>The ledger of the running class (what its AfterFailure steps consult); empty outside the step framework.</summary>
    public static StepLedger Of(Type testClass) => ByClass.GetOrAdd(testClass, _ => new StepLedger());

    /// <summary>Why <paramref name="step"/> must not run now, or null when it may.</summary>
    public string? SkipReason(StepAttribute? step) =>
        step is null || step.AfterFailure || _firstFailure is not { } failed
            ? null
            : $"skipped because step {failed.Order} ({failed.Name}) failed: this step needs the shared cluster that step left behind";

    /// <summary>Records how a step ended; a skipped step (<paramref name="ran"/> false) counts as neither passed nor failed.</summary>
    public void Record(StepAttribute? step, string name, bool failed, bool ran = true)
    {
        if (step is null)
        {
            return;
        }
        if (failed && _firstFailure is null)
        {
            _firstFailure = (step.Order, name);
        }
        if (ran && !failed)
        {
            _passed[step.Order] = true;
        }
    }

    /// <summary>Whether step <paramref name="order"/> ran to its end in this run (neither failed nor skipped).</summary>
    public bool Passed(int order) => _passed.ContainsKey(order);
}

/// <summary>
/// xunit v2's framework with one change: each test class runs with a <see cref="StepLedger"/>, so the steps after a
/// failed one are skipped with its name. Registered for the assembly in AssemblyInfo.cs.
/// </summary>
public sealed class StepFramework(IMessageSink messageSink) : XunitTestFramework(messageSink)
{
    public const string TypeName = "Asterism.EndToEnd.Tests.Infrastructure.StepFramework";

    protected override ITestFrameworkExecutor CreateExecutor(AssemblyName assemblyName) =>
        new Executor(assemblyName, SourceInformationProvider, DiagnosticMessageSink);

    private sealed class Executor(AssemblyName assemblyName, ISourceInformationProvider sourceInformationProvider, IMessageSink diagnosticMessageSink)
        : XunitTestFrameworkExecutor(assemblyName, sourceInformationProvider, diagnosticMessageSink)
    {
        protected override async void RunTestCases(IEnumerable<IXunitTestCase> testCases, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
        {
            using var runner = new AssemblyRunner(TestAssembly, testCases, DiagnosticMessageSink, executionMessageSink, executionOptions);
            await runner.RunAsync();
        }
    }

    private sealed class AssemblyRunner(ITestAssembly testAssembly, IEnumerable<IXunitTestCase> testCases, IMessageSink diagnosticMessageSink, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
        : XunitTestAssemblyRunner(testAssembly, testCases, diagnosticMessageSink, executionMessageSink, executionOptions)
    {
        protected override Task<RunSummary> RunTestCollectionAsync(IMessageBus messageBus, ITestCollection testCollection, IEnumerable<IXunitTestCase> testCases, CancellationTokenSource cancellationTokenSource) =>
            new CollectionRunner(testCollection, testCases, DiagnosticMessageSink, messageBus, TestCaseOrderer, new ExceptionAggregator(Aggregator), cancellationTokenSource).RunAsync();
    }

    private sealed class CollectionRunner(ITestCollection testCollection, IEnumerable<IXunitTestCase> testCases, IMessageSink diagnosticMessageSink, IMessageBus messageBus, ITestCaseOrderer testCaseOrderer, ExceptionAggregator aggregator, CancellationTokenSource cancellationTokenSource)
        : XunitTestCollectionRunner(testCollection, testCases, diagnosticMessageSink, messageBus, testCaseOrderer, aggregator, cancellationTokenSource)
    {
        protected override Task<RunSummary> RunTestClassAsync(ITestClass testClass, IReflectionTypeInfo @class, IEnumerable<IXunitTestCase> testCases) =>
            new ClassRunner(testClass, @class, testCases, DiagnosticMessageSink, MessageBus, TestCaseOrderer, new ExceptionAggregator(Aggregator), CancellationTokenSource, CollectionFixtureMappings).RunAsync();
    }

    private sealed class ClassRunner(ITestClass testClass, IReflectionTypeInfo @class, IEnumerable<IXunitTestCase> testCases, IMessageSink diagnosticMessageSink, IMessageBus messageBus, ITestCaseOrderer testCaseOrderer, ExceptionAggregator aggregator, CancellationTokenSource cancellationTokenSource, IDictionary<Type, object> collectionFixtureMappings)
        : XunitTestClassRunner(testClass, @class, testCases, diagnosticMessageSink, messageBus, testCaseOrderer, aggregator, cancellationTokenSource, collectionFixtureMappings)
    {
        private readonly StepLedger _ledger = StepLedger.Start(@class.Type);

        protected override async Task<RunSummary> RunTestMethodAsync(ITestMethod testMethod, IReflectionMethodInfo method, IEnumerable<IXunitTestCase> testCases, object[] constructorArguments)
        {
            var step = StepAttribute.Of(method.MethodInfo);
            var runner = new MethodRunner(_ledger.SkipReason(step), testMethod, Class, method, testCases, DiagnosticMessageSink, MessageBus, new ExceptionAggregator(Aggregator), CancellationTokenSource, constructorArguments);
            var summary = await runner.RunAsync();
            _ledger.Record(step, method.Name, summary.Failed > 0, ran: summary.Skipped < summary.Total);
            return summary;
        }
    }

    private sealed class MethodRunner : XunitTestMethodRunner
    {
        private readonly string? _skipReason;
        private readonly object[] _constructorArguments;

        public MethodRunner(string? skipReason, ITestMethod testMethod, IReflectionTypeInfo @class, IReflectionMethodInfo method, IEnumerable<IXunitTestCase> testCases, IMessageSink diagnosticMessageSink, IMessageBus messageBus, ExceptionAggregator aggregator, CancellationTokenSource cancellationTokenSource, object[] constructorArguments)
            : base(testMethod, @class, method, testCases, diagnosticMessageSink, messageBus, aggregator, cancellationTokenSource, constructorArguments)
        {
            _skipReason = skipReason;
            _constructorArguments = constructorArguments;
        }

        // The skip reason goes where a [Fact(Skip = …)] would put it: xunit then reports the test skipped without running it.
        protected override Task<RunSummary> RunTestCaseAsync(IXunitTestCase testCase) =>
            _skipReason is null
                ? base.RunTestCaseAsync(testCase)
                : new XunitTestCaseRunner(testCase, testCase.DisplayName, _skipReason, _constructorArguments, testCase.TestMethodArguments, MessageBus, new ExceptionAggregator(Aggregator), CancellationTokenSource).RunAsync();
    }
}
