using Xunit.Abstractions;
using Xunit.Sdk;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>Orders the tests of a scenario class that share one cluster: lower step numbers run first.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class StepAttribute(int order) : Attribute
{
    public int Order { get; } = order;
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
